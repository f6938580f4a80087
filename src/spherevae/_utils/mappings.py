"""TODO docstring."""

from __future__ import annotations

import contextlib

import dataclasses

import datetime

import errno

import inspect

import json

import os

import socket

import tempfile

import warnings

from collections.abc import Callable, Iterator, Mapping

from pathlib import Path

from typing import IO, Any


def flatten_keys(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}} -> {'a.b': 1}`` (nested mappings to dotted keys)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_keys(v, key + "."))
        else:
            out[key] = v
    return out


