"""lookup_order: JSON arguments on stdin, the order as JSON on stdout."""
import json
import sys

ORDERS = {"ord-1001": {"status": "delivered", "amount": 1999, "customer_id": "cust-7"}}

args = json.load(sys.stdin)
order = ORDERS.get(args["order_id"])
if order is None:
    print(f"no order {args['order_id']}", file=sys.stderr)
    sys.exit(1)
json.dump({"order_id": args["order_id"], **order}, sys.stdout)
