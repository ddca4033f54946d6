"""Attachments and PDFs on an S3-compatible store: ``S3Storage`` against moto's S3 server
over real HTTP on loopback (a stand-in for MinIO or Ceph; no real object store is
reachable from the test machines). Put, read, exists and delete; the sha256 kept as
object metadata; keys that try to leave the prefix refused before any request; one
factory chosen by configuration; and end to end through the web app: an applicant's
upload lands in the bucket and downloads back, a decision PDF is written there, and a
call's zip of letters is built from and streamed out of the bucket.
"""

from __future__ import annotations

import functools
import hashlib
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from tests.conftest import login as _login
from tests.test_documents_jobs import _approve, _unrendered_call
from tests.test_portal import FreshClient
from webapp.config import ConfigError, from_env
from webapp.jobs import relay
from webapp.jobs import storage as app_storage
from workflow import outbox
from workflow.models import Application, Attachment, JobRecord
from workflow.storage import LocalStorage, StorageError, storage_from_config
from workflow.storage_s3 import S3Storage

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PREFIX = "shenbao/test"
HOSTILE_KEYS = [
    "../outside",
    "att/../../outside",
    "/etc/passwd",
    "att//double",
    "att/./here",
    "att\\..\\outside",
    "att/\x00nul",
    "",
    "a" * 600,
]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 on a free loopback port, with throwaway credentials in the environment
    (where boto3 reads them in production too)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "shenbao-test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "shenbao-test-secret")
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_settings(s3_endpoint) -> dict[str, str]:
    """A fresh bucket per test, and the configuration that points at it."""
    settings = {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": f"shenbao-{uuid.uuid4().hex[:12]}",
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_PREFIX": PREFIX,
        "S3_REGION": "us-east-1",
        "S3_ADDRESSING_STYLE": "path",
    }
    raw_client(settings).create_bucket(Bucket=settings["S3_BUCKET"])
    return settings


def raw_client(settings: dict[str, str]):
    """A plain boto3 client, to look at the bucket independently of ``S3Storage``."""
    return _client_for(settings["S3_ENDPOINT_URL"])


@functools.cache
def _client_for(endpoint: str):
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")


def object_names(settings: dict[str, str]) -> list[str]:
    listing = raw_client(settings).list_objects_v2(Bucket=settings["S3_BUCKET"])
    return sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.fixture
def store(s3_settings) -> S3Storage:
    return S3Storage.from_config(s3_settings)


@pytest.fixture
def s3_app(app, s3_settings, monkeypatch):
    """The session's app switched to the S3 backend for one test."""
    for name, value in s3_settings.items():
        monkeypatch.setitem(app.config, name, value)
    app.extensions.pop("shenbao_storage", None)
    yield app
    app.extensions.pop("shenbao_storage", None)


@pytest.fixture(autouse=True)
def _relay_on(monkeypatch):
    """Jobs leave after the commit (code run earlier may have switched the relay off)."""
    monkeypatch.setattr(outbox, "_relay", relay)


def local_files(app) -> list[Path]:
    root = Path(app.config["STORAGE_DIR"])
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ---------------------------------------------------------------- the storage itself


def test_put_read_exists_delete(store, s3_settings):
    key, digest = store.put(PDF, prefix="att")
    assert digest == hashlib.sha256(PDF).hexdigest()
    assert key.startswith(f"att/{digest[:2]}/{digest}-")
    assert store.exists(key) and store.read(key) == PDF
    with store.open(key) as body:
        assert body.read(4) == b"%PDF"
    assert object_names(s3_settings) == [f"{PREFIX}/{key}"]
    # The same bytes twice are two objects: keys are never reused.
    assert store.put(PDF, prefix="att")[0] != key
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.read(key)
    store.delete(key)  # deleting again is not an error


def test_put_at_replaces_and_returns_the_sha256(store):
    key = "decisions/2026/1-ABCD.pdf"
    assert store.put_at(key, b"first") == hashlib.sha256(b"first").hexdigest()
    assert store.put_at(key, b"second") == hashlib.sha256(b"second").hexdigest()
    assert store.read(key) == b"second"
    assert store.sha256(key) == hashlib.sha256(b"second").hexdigest()


def test_the_sha256_is_object_metadata(store, s3_settings):
    key, digest = store.put(PDF, prefix="objection")
    head = raw_client(s3_settings).head_object(
        Bucket=s3_settings["S3_BUCKET"], Key=f"{PREFIX}/{key}"
    )
    assert head["Metadata"] == {"sha256": digest}
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-sha256"] == digest
    assert head["ContentType"] == "application/octet-stream"
    assert "ServerSideEncryption" not in head  # off unless S3_SSE is set


def test_server_side_encryption_by_setting(s3_settings):
    store = S3Storage.from_config({**s3_settings, "S3_SSE": "AES256"})
    key, _ = store.put(PDF)
    head = raw_client(s3_settings).head_object(
        Bucket=s3_settings["S3_BUCKET"], Key=f"{PREFIX}/{key}"
    )
    assert head["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_keys_that_try_to_leave_the_prefix_are_refused(store, s3_settings, key):
    outside = "outside"
    raw_client(s3_settings).put_object(Bucket=s3_settings["S3_BUCKET"], Key=outside, Body=b"x")
    with pytest.raises(StorageError):
        store.put_at(key, b"overwrite")
    with pytest.raises(StorageError):
        store.read(key)
    with pytest.raises(StorageError):
        store.open(key)
    assert store.exists(key) is False
    store.delete(key)  # refused quietly, like the local backend
    assert object_names(s3_settings) == [outside]
    assert raw_client(s3_settings).get_object(Bucket=s3_settings["S3_BUCKET"], Key=outside)[
        "Body"
    ].read() == (b"x")


def test_a_prefix_with_dot_segments_is_refused(s3_settings):
    with pytest.raises(StorageError):
        S3Storage.from_config({**s3_settings, "S3_PREFIX": "shenbao/../other"})


def test_the_local_backend_refuses_the_same_keys(tmp_path):
    local = LocalStorage(tmp_path / "storage")
    for key in HOSTILE_KEYS:
        with pytest.raises(StorageError):
            local.put_at(key, b"x")
        assert local.exists(key) is False
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# ---------------------------------------------------------------- one factory


def test_the_factory_follows_storage_backend(s3_settings, tmp_path):
    assert isinstance(storage_from_config({"STORAGE_DIR": str(tmp_path)}), LocalStorage)
    chosen = storage_from_config(s3_settings)
    assert isinstance(chosen, S3Storage) and chosen.bucket == s3_settings["S3_BUCKET"]
    with pytest.raises(StorageError):
        storage_from_config({"STORAGE_BACKEND": "ftp", "STORAGE_DIR": str(tmp_path)})


def test_s3_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STORAGE_BACKEND", "S3")
    monkeypatch.setenv("S3_BUCKET", "attachments")
    monkeypatch.setenv("S3_ENDPOINT_URL", "https://minio.internal:9000")
    monkeypatch.setenv("S3_PREFIX", "changchun/")
    monkeypatch.setenv("S3_SSE", "aws:kms")
    cfg = from_env(str(tmp_path))
    assert (cfg["STORAGE_BACKEND"], cfg["S3_BUCKET"], cfg["S3_PREFIX"]) == (
        "s3",
        "attachments",
        "changchun/",
    )
    assert cfg["S3_ENDPOINT_URL"] == "https://minio.internal:9000" and cfg["S3_SSE"] == "aws:kms"
    monkeypatch.delenv("S3_BUCKET")
    with pytest.raises(ConfigError, match="S3_BUCKET"):
        from_env(str(tmp_path))
    monkeypatch.setenv("STORAGE_BACKEND", "nfs")
    with pytest.raises(ConfigError, match="STORAGE_BACKEND"):
        from_env(str(tmp_path))


def test_the_app_builds_its_storage_once_per_process(s3_app, s3_settings):
    with s3_app.app_context():
        first = app_storage()
        assert isinstance(first, S3Storage) and app_storage() is first


# ---------------------------------------------------------------- through the web app


def test_an_upload_lands_in_the_bucket_and_downloads_back(s3_app, s3_settings, session, make):
    before = local_files(s3_app)
    applicant = make.applicant()
    draft = make.application(make.call("certification_reward"), applicant, materials=False)
    client = FreshClient(s3_app, s3_app.response_class, use_cookies=True)
    session.commit()
    _login(client, applicant)
    response = client.post(
        f"/applications/{draft.id}/materials",
        data={"kind": "application_form", "file": (io.BytesIO(PDF), "申请表.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    att = session.scalar(select(Attachment).where(Attachment.application_id == draft.id))
    assert att.sha256 == hashlib.sha256(PDF).hexdigest()
    assert object_names(s3_settings) == [f"{PREFIX}/{att.storage_key}"]
    assert S3Storage.from_config(s3_settings).sha256(att.storage_key) == att.sha256
    assert local_files(s3_app) == before  # nothing written to the local folder

    download = client.get(f"/attachments/{att.id}?download=1")
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["Content-Disposition"].startswith("attachment")
    _login(client, make.applicant())
    assert client.get(f"/attachments/{att.id}").status_code == 403


def test_a_decision_pdf_is_written_to_the_bucket(s3_app, s3_settings, session):
    before = local_files(s3_app)
    (decision,) = _approve(session, "certification_reward")
    assert decision.pdf_sha256 and decision.pdf_storage_key.startswith("decisions/")
    store = S3Storage.from_config(s3_settings)
    assert store.sha256(decision.pdf_storage_key) == decision.pdf_sha256
    pdf = store.read(decision.pdf_storage_key)
    assert pdf.startswith(b"%PDF") and hashlib.sha256(pdf).hexdigest() == decision.pdf_sha256
    assert local_files(s3_app) == before

    owner = session.get(Application, decision.application_id).organization.users[0]
    client = FreshClient(s3_app, s3_app.response_class, use_cookies=True)
    session.commit()
    _login(client, owner)
    response = client.get(f"/decisions/{decision.id}/pdf")
    assert response.status_code == 200 and response.data == pdf


def test_a_calls_zip_is_built_from_and_streamed_out_of_the_bucket(
    s3_app, s3_settings, session, make, monkeypatch
):
    call, decisions = _unrendered_call(session, monkeypatch)
    officer = make.user("approver", program="branded_agency")
    client = FreshClient(s3_app, s3_app.response_class, use_cookies=True)
    session.commit()
    _login(client, officer)
    assert client.post(f"/review/calls/{call.id}/decisions.zip").status_code == 302
    job_id = f"zip-call-{call.id}-1"
    record = session.scalar(select(JobRecord).where(JobRecord.job_id == job_id))
    assert record.status == "done" and f"{PREFIX}/{record.result_storage_key}" in (
        object_names(s3_settings)
    )
    download = client.get(f"/jobs/{job_id}/download")
    assert download.status_code == 200 and download.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.data))
    store = S3Storage.from_config(s3_settings)
    assert download.data == store.read(record.result_storage_key)
    for d in decisions:
        session.refresh(d)
        assert store.sha256(d.pdf_storage_key) == d.pdf_sha256
    assert len([n for n in archive.namelist() if n.endswith(".pdf")]) == len(decisions)
    store.delete(record.result_storage_key)
    assert client.get(f"/jobs/{job_id}/download").status_code == 404
