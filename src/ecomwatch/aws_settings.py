"""AWS settings shared by every adapter: the region from boto3's own settings (profile,
`AWS_DEFAULT_REGION`), else `AWS_REGION` (which boto3 does not read), else a fallback."""

from __future__ import annotations

import os

import boto3


def region(session: boto3.session.Session, fallback: str | None = None) -> str:
    return session.region_name or os.environ.get("AWS_REGION") or fallback or "us-east-1"
