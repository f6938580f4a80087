from spherevae.cli import main

raise SystemExit(main())
