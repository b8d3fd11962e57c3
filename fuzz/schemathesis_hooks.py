"""Schemathesis hooks for Perks: the server-error check, aware of the spec's "all items failed".

The Capillary contract answers a batch whose every item failed with HTTP 500 and a well-formed
envelope (v1.1 `response.status.code` 500, "All requests have failed due to errors"; v2 bulk
endpoints a JSON array of per-item errors). A feature that waits for another module (user groups,
connected orgs) answers 501 in the normal error envelope, saying so. Those answers are documented
behaviour, not crashes. Anything else at 5xx, or any item or error that says "Internal server
error", is a bug.
"""

import json

import schemathesis

ALL_FAILED = "All requests have failed due to errors"
INTERNAL = "Internal server error"


def _documented_all_failed(body):
    if isinstance(body, list):
        # v2 bulk: every element carries its own non-empty errors.
        return bool(body) and all(isinstance(i, dict) and i.get("errors") for i in body)
    if isinstance(body, dict):
        status = (body.get("response") or {}).get("status") or {}
        return str(status.get("code")) == "500" and status.get("message") == ALL_FAILED
    return False


@schemathesis.check
def no_internal_error(ctx, response, case):
    text = response.text or ""
    if INTERNAL in text:
        raise AssertionError(f"internal server error: HTTP {response.status_code}: {text[:300]}")
    if response.status_code < 500:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        raise AssertionError(f"HTTP {response.status_code} without a JSON envelope: {text[:300]}")
    if response.status_code == 501 and isinstance(body, (dict, list)):
        return None
    if not _documented_all_failed(body):
        raise AssertionError(f"HTTP {response.status_code} outside the contract: {text[:300]}")
    return None
