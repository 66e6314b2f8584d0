"""issue_refund: pretends to refund; the call id doubles as the refund's idempotency key."""
import json
import os
import sys

args = json.load(sys.stdin)
json.dump({"refund_id": "rf-" + os.environ.get("ARBITER_CALL_ID", "?"), "amount": args["amount"]}, sys.stdout)
