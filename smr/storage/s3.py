"""S3 and S3-compatible stores (SeaweedFS, MinIO, Ceph, R2) on boto3.

Rooted at ``s3://bucket/prefix``. What matters here, beyond the Store seam:

- **One client per process, made after the process starts.** The client (and its pool of
  keep-alive connections) is created on first use and re-created when ``os.getpid()`` changes,
  so a connection never crosses a fork: two processes reading from one pooled socket get each
  other's responses, which against a keep-alive server shows up as silently wrong data.
- **Retries with exponential backoff and full jitter** on throttling (SlowDown, 503), server
  faults (500/502/504), connection resets and read timeouts, including faults in the middle of
  reading a response body (botocore does not retry those). botocore's own retries are off, so
  there is exactly one retry policy and it covers every request.
- **Ranged GETs, streamed.** ``open_range`` issues one GET for the whole range and reads its
  body incrementally; a fault mid-stream resumes with a new GET from the current position.
- **Multipart uploads** for objects past ``multipart_threshold``, parts sent by a few threads
  (memory: ``upload_threads`` parts at a time), aborted on failure so no half-object appears.
- **Connection pool sized to the concurrency** the store is used with (its upload threads plus
  the callers' threads), so concurrent requests do not queue for, or churn, connections.
- The endpoint comes from ``s3_endpoint``, else ``AWS_ENDPOINT_URL_S3``, else
  ``AWS_ENDPOINT_URL``; with a custom endpoint, path-style addressing is used (S3-compatible
  servers rarely resolve ``bucket.host``). Credentials come from boto3's usual chain.
"""
from __future__ import annotations

import io
import logging
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Callable, Iterator, TypeVar

from .base import STREAM_BLOCK, NotFound, ObjectInfo, Store, StoreError, check_key

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 2**20
#: Objects at least this big are uploaded in parts.
MULTIPART_THRESHOLD = 64 * MiB
#: Part size of multipart uploads (S3 allows 5 MiB .. 5 GiB per part, 10000 parts).
PART_SIZE = 16 * MiB
#: Largest object one CopyObject request may copy; bigger ones are copied in parts.
COPY_LIMIT = 5 * 2**30
COPY_PART = 512 * MiB
MAX_PARTS = 10000
#: Error codes that mean "try again later" rather than "you asked for something wrong".
RETRY_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestTimeout",
    "RequestTimeoutException", "InternalError", "ServiceUnavailable", "OperationAborted",
    "ConditionalRequestConflict",
    "500", "502", "503", "504",
})
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def resolve_endpoint(explicit: str | None) -> str | None:
    """The S3 endpoint URL: the option, else boto3's per-service variable, else the global one."""
    for value in (explicit, os.environ.get("AWS_ENDPOINT_URL_S3"),
                  os.environ.get("AWS_ENDPOINT_URL")):
        if value:
            return value
    return None


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``)."""
    scheme, sep, body = url.partition("://")
    if not sep or scheme.lower() not in ("s3", "s3a"):
        raise StoreError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = body.partition("/")
    if not bucket:
        raise StoreError(f"S3 URL {url!r} names no bucket (expected s3://bucket/prefix)")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def _transient_errors() -> tuple[type[BaseException], ...]:
    import botocore.exceptions as be
    import urllib3.exceptions as ue
    return (be.ConnectionError, be.HTTPClientError, be.ResponseStreamingError,
            be.IncompleteReadError, ue.ProtocolError, ue.ReadTimeoutError, ue.IncompleteRead,
            ConnectionError, TimeoutError)


class _NoConditionalPuts(Exception):
    """The server refused If-None-Match on PUT."""


class S3Store(Store):
    schemes = ("s3", "s3a")

    def __init__(self, url: str, *, s3_endpoint: str | None = None,
                 s3_region: str | None = None, s3_addressing: str | None = None,
                 s3_max_attempts: int = 8, s3_concurrency: int = 16,
                 s3_upload_threads: int = 4, s3_read_timeout: float = 60,
                 multipart_threshold: int = MULTIPART_THRESHOLD,
                 part_size: int = PART_SIZE, **_other_backends: Any) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        super().__init__(f"s3://{self.bucket}/{self.prefix}".rstrip("/"))
        self.endpoint = resolve_endpoint(s3_endpoint)
        if self.endpoint and "://" not in self.endpoint:
            raise StoreError(f"S3 endpoint {self.endpoint!r} must be a URL, e.g. http://127.0.0.1:8333")
        self.region = s3_region
        if s3_addressing not in (None, "auto", "path", "virtual"):
            raise StoreError(f"s3_addressing must be auto, path or virtual, not {s3_addressing!r}")
        self.addressing = s3_addressing or ("path" if self.endpoint else "auto")
        self.max_attempts = max(1, int(s3_max_attempts))
        self.read_timeout = float(s3_read_timeout)
        self.upload_threads = max(1, int(s3_upload_threads))
        self.pool_size = max(10, int(s3_concurrency) + self.upload_threads)
        self.multipart_threshold = max(5 * MiB, int(multipart_threshold))
        self.part_size = max(5 * MiB, int(part_size))
        self.copy_limit, self.copy_part = COPY_LIMIT, COPY_PART
        self._client_obj: Any = None
        self._client_pid = -1
        self._client_lock = threading.Lock()
        self._lock_pid = os.getpid()
        self._transient: tuple[type[BaseException], ...] | None = None
        self._conditional_puts = True

    # -- the client, one per process --------------------------------------------------------
    @property
    def client(self) -> Any:
        pid = os.getpid()
        if self._client_pid != pid:
            if self._lock_pid != pid:
                # A lock held by another thread at fork time stays held in the child forever.
                self._client_lock, self._lock_pid = threading.Lock(), pid
            with self._client_lock:
                if self._client_pid != pid:
                    self._client_obj = self._new_client()
                    self._client_pid = pid
        return self._client_obj

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config
        extra: dict[str, Any] = {}
        if self.endpoint:
            # S3-compatible servers differ in which checksum headers they accept; send the
            # ones S3 requires and let the others be.
            extra = {"request_checksum_calculation": "when_required",
                     "response_checksum_validation": "when_required"}
        config = Config(
            max_pool_connections=self.pool_size,
            retries={"total_max_attempts": 1, "mode": "standard"},  # we retry, see _call
            connect_timeout=10, read_timeout=self.read_timeout, tcp_keepalive=True,
            s3={"addressing_style": self.addressing}, **extra)
        session = boto3.session.Session()
        region = self.region or session.region_name or "us-east-1"
        return session.client("s3", endpoint_url=self.endpoint, region_name=region, config=config)

    def close(self) -> None:
        client, self._client_obj, self._client_pid = self._client_obj, None, -1
        if client is not None and hasattr(client, "close"):
            client.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_client_obj=None, _client_pid=-1, _client_lock=None, _lock_pid=-1,
                     _transient=None)
        return state

    # -- retries ----------------------------------------------------------------------------
    def _is_transient(self, err: BaseException) -> bool:
        from botocore.exceptions import ClientError
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code in RETRY_CODES or status in RETRY_STATUS
        if self._transient is None:
            self._transient = _transient_errors()
        return isinstance(err, self._transient)

    def _backoff(self, attempt: int, err: BaseException) -> float:
        # Exponential backoff with full jitter (AWS's recommendation): spreads the retries of
        # many workers throttled at the same moment, instead of having them come back together.
        # Caps 0.2, 0.4, ... 12.8 s: about 13 s expected over the 7 retries of 8 attempts.
        return random.uniform(0, min(20.0, 0.1 * 2 ** attempt))

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run one request (including reading its body) with retries; map errors to StoreErrors."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn()
            except NoCredentialsError:
                raise StoreError(f"no AWS credentials for {self.child_url(key)}: set "
                                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile") from None
            except (ClientError, BotoCoreError, OSError) as e:
                if isinstance(e, StoreError):
                    raise
                if not self._is_transient(e):
                    raise self._error(what, key, e) from None
                if attempt == self.max_attempts:
                    raise StoreError(f"S3 {what} {self.child_url(key)} failed after {attempt} "
                                     f"attempts: {_describe(e)}") from None
                delay = self._backoff(attempt, e)
                log.info("S3 %s %s: %s; retry %d in %.2fs", what, self.child_url(key),
                         _describe(e), attempt, delay)
                self.requests.add("retry")
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _error(self, what: str, key: str, err: BaseException) -> StoreError:
        from botocore.exceptions import ClientError
        url = self.child_url(key)
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in NOT_FOUND_CODES:
                return NotFound(f"no such object: {url}")
            if code == "NoSuchBucket":
                return StoreError(f"no such bucket: s3://{self.bucket} (for {url})")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return StoreError(f"access denied to {url} ({code}): check the credentials "
                                  "and the bucket's policy")
        where = f" at {self.endpoint}" if self.endpoint else ""
        return StoreError(f"S3 {what} {url}{where} failed: {_describe(err)}")

    def _full(self, key: str) -> str:
        return self.prefix + key

    # -- the Store seam ---------------------------------------------------------------------
    def _get_range(self, key: str, start: int, end: int | None) -> bytes:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full(key)}
        if start > 0 or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"

        def get() -> bytes:
            from botocore.exceptions import ClientError
            try:
                resp = self.client.get_object(**args)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "InvalidRange":
                    return self._past_end(key)
                raise
            with resp["Body"] as body:
                data = body.read()
            if "Range" in args and not resp.get("ContentRange"):
                data = data[start:end]  # a server that ignored the Range header
            return data
        return self._call("GET", key, get)

    def _past_end(self, key: str) -> bytes:
        # S3 answers a range past the end with 416; that is an empty read of an existing object.
        self._require(key)
        return b""

    def open_range(self, key: str, start: int = 0, end: int | None = None,
                   block: int = STREAM_BLOCK) -> BinaryIO:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range [{start}, {end}) for {key!r}")
        return _S3RangeStream(self, check_key(key), start, end)  # type: ignore[return-value]

    def _put(self, key: str, data: bytes) -> None:
        if len(data) >= self.multipart_threshold:
            view = memoryview(data)
            self._multipart(key, len(data), lambda off, n: bytes(view[off:off + n]))
            return
        self._call("PUT", key, lambda: self.client.put_object(
            Bucket=self.bucket, Key=self._full(key), Body=data))

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        # S3's conditional write (If-None-Match: *) makes create-once atomic; a server without
        # it (older S3-compatible stores) gets the head-then-put fallback, which can race.
        from botocore.exceptions import ClientError, ParamValidationError
        if self._conditional_puts:
            def put() -> bool:
                try:
                    self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data,
                                           IfNoneMatch="*")
                    return True
                except ClientError as e:
                    code = str(e.response.get("Error", {}).get("Code", ""))
                    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if code in ("PreconditionFailed", "ConditionalRequestConflict") \
                            or status in (409, 412):
                        return False
                    if code in ("NotImplemented", "InvalidArgument") or status == 501:
                        raise _NoConditionalPuts() from None
                    raise
            try:
                return self._call("PUT", key, put)
            except (_NoConditionalPuts, ParamValidationError):
                log.info("%s: no conditional PUT; create-once falls back to head then put",
                         self.endpoint or "S3")
                self._conditional_puts = False
        return super()._put_if_absent(key, data)

    def _put_file(self, key: str, path: str) -> None:
        size = os.path.getsize(path)
        if size < self.multipart_threshold:
            with open(path, "rb") as f:
                data = f.read()
            self._call("PUT", key, lambda: self.client.put_object(
                Bucket=self.bucket, Key=self._full(key), Body=data))
            return

        def read_part(offset: int, length: int) -> bytes:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        self._multipart(key, size, read_part)

    def _multipart(self, key: str, size: int, read_part: Callable[[int, int], bytes]) -> None:
        part = max(self.part_size, math.ceil(size / MAX_PARTS))
        full = self._full(key)
        upload = self._call("PUT", key, lambda: self.client.create_multipart_upload(
            Bucket=self.bucket, Key=full))
        upload_id = upload["UploadId"]

        def send(number: int, offset: int) -> dict[str, Any]:
            data = read_part(offset, min(part, size - offset))
            self.requests.add("put")
            resp = self._call("PUT", key, lambda: self.client.upload_part(
                Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=data))
            return {"PartNumber": number, "ETag": resp["ETag"]}

        try:
            # Parts are read when a thread takes them, so memory holds upload_threads parts.
            with ThreadPoolExecutor(self.upload_threads, thread_name_prefix="smr-s3-part") as ex:
                futures = [ex.submit(send, n + 1, off)
                           for n, off in enumerate(range(0, size, part))]
                parts = [f.result() for f in futures]
            self.requests.add("put")
            self._call("PUT", key, lambda: self._complete(key, upload_id, parts, size))
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            except Exception as e:  # the original error matters more
                log.warning("could not abort multipart upload of %s: %s", self.child_url(key), e)
            raise

    def _complete(self, key: str, upload_id: str, parts: list[dict[str, Any]], size: int) -> None:
        from botocore.exceptions import ClientError
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self._full(key), UploadId=upload_id,
                MultipartUpload={"Parts": parts})
        except ClientError as e:
            # A retry after a reply was lost: the first attempt completed the upload.
            if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
            info = self._head(key)
            if info is None or info.size != size:
                raise

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        if self.endpoint is None:
            yield from self._list_pages(prefix)  # AWS lists in UTF-8 byte order, page by page
            return
        # S3-compatible servers need not (SeaweedFS walks its directory tree: "a/b" before
        # "a-c"), so their listings are sorted here, which means reading them whole first.
        yield from sorted(self._list_pages(prefix), key=lambda o: o.key)

    def _list_pages(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._full(prefix)
        skip = len(self.prefix)
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full, "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            page = self._call("LIST", prefix, lambda: self.client.list_objects_v2(**args))
            for obj in page.get("Contents", ()):
                k = obj["Key"]
                if k.endswith("/") or len(k) <= skip:
                    continue  # "directory" markers made by consoles and some servers
                yield ObjectInfo(k[skip:], int(obj["Size"]))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            self.requests.add("list")

    def _head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        def head() -> ObjectInfo | None:
            try:
                resp = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            except ClientError as e:
                if str(e.response.get("Error", {}).get("Code")) in NOT_FOUND_CODES:
                    return None
                raise
            return ObjectInfo(key, int(resp["ContentLength"]))
        return self._call("HEAD", key, head)

    def _copy_from(self, src: Store, src_key: str, key: str) -> bool:
        """Server-side copy between two S3 stores on one endpoint: no bytes pass through here."""
        if not isinstance(src, S3Store) or src.endpoint != self.endpoint:
            return False
        info = src._head(src_key)
        if info is None:
            raise NotFound(f"no such object: {src.child_url(src_key)}")
        source = {"Bucket": src.bucket, "Key": src._full(src_key)}
        full = self._full(key)
        if info.size <= self.copy_limit:
            self._call("COPY", key, lambda: self.client.copy_object(
                Bucket=self.bucket, Key=full, CopySource=source))
            return True
        part = max(self.copy_part, math.ceil(info.size / MAX_PARTS))
        upload_id = self._call("COPY", key, lambda: self.client.create_multipart_upload(
            Bucket=self.bucket, Key=full))["UploadId"]

        def copy_part(number: int, offset: int) -> dict[str, Any]:
            last = min(info.size, offset + part) - 1
            resp = self._call("COPY", key, lambda: self.client.upload_part_copy(
                Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number,
                CopySource=source, CopySourceRange=f"bytes={offset}-{last}"))
            return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}
        try:
            with ThreadPoolExecutor(self.upload_threads, thread_name_prefix="smr-s3-copy") as ex:
                parts = [f.result() for f in [ex.submit(copy_part, n + 1, off) for n, off in
                                              enumerate(range(0, info.size, part))]]
            self._call("COPY", key, lambda: self._complete(key, upload_id, parts, info.size))
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            except Exception as e:
                log.warning("could not abort multipart copy to %s: %s", self.child_url(key), e)
            raise
        return True

    def _delete(self, key: str) -> None:
        self._call("DELETE", key, lambda: self.client.delete_object(
            Bucket=self.bucket, Key=self._full(key)))

    def _delete_many(self, keys: list[str]) -> None:
        if not keys:
            return
        objects = [{"Key": self._full(k)} for k in keys]
        resp = self._call("DELETE", keys[0], lambda: self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}))
        errors = [e for e in resp.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
        if errors:
            e = errors[0]
            raise StoreError(f"could not delete s3://{self.bucket}/{e.get('Key')}: "
                             f"{e.get('Code')}: {e.get('Message')} ({len(errors)} failed)")


def _describe(err: BaseException) -> str:
    resp = getattr(err, "response", None)
    if isinstance(resp, dict) and "Error" in resp:
        e = resp["Error"]
        status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{e.get('Code')}: {e.get('Message') or 'no message'} (HTTP {status})"
    return f"{type(err).__name__}: {err}"


class _S3RangeStream(io.RawIOBase):
    """One GET for a whole byte range, read incrementally; a fault mid-body resumes at the
    current position with a new ranged GET, so a long read survives a dropped connection."""

    def __init__(self, store: S3Store, key: str, start: int, end: int | None) -> None:
        self._store, self._key, self._pos, self._end = store, key, start, end
        self._body: Any = None
        self._eof = end is not None and end <= start
        self._checked = False

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        from botocore.exceptions import ClientError
        st = self._store
        rng = f"bytes={self._pos}-{'' if self._end is None else self._end - 1}"
        st.requests.add("get")
        try:
            resp = st.client.get_object(Bucket=st.bucket, Key=st._full(self._key), Range=rng)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvalidRange":
                st._past_end(self._key)
                self._eof = True
                return
            raise
        if not resp.get("ContentRange") and self._pos > 0:
            raise StoreError(f"{st.child_url(self._key)}: the server ignored a Range request")
        self._body = resp["Body"]

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        if self._eof or len(b) == 0:
            if not self._checked and self._eof and self._end is not None:
                self._checked = True
                self._store._require(self._key)  # an empty range of a missing object
            return 0
        want = len(b)
        if self._end is not None:
            want = min(want, self._end - self._pos)

        def read() -> bytes:
            if self._body is None:
                self._open()
                if self._eof:
                    return b""
            try:
                return self._body.read(want)
            except BaseException:
                self._drop_body()
                raise
        data = self._store._call("GET", self._key, read)
        self._checked = True
        if not data:
            self._eof = True
            self._drop_body()
            return 0
        n = len(data)
        b[:n] = data
        self._pos += n
        if self._end is not None and self._pos >= self._end:
            self._eof = True
            self._drop_body()
        return n

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            try:
                body.close()
            except Exception:
                pass

    def close(self) -> None:
        self._drop_body()
        super().close()
