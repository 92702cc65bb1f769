"""Drives a running tickraft-kv cluster with the Python `redis` package, as a user would.

Usage: python3 scripts/client-compat.py PORT1 PORT2 PORT3. Exits non-zero on the first surprise.
"""

import sys
import warnings

import redis

ports = [int(p) for p in sys.argv[1:]]
# redis-py 8 tries HELLO 3 first and warns when it falls back to RESP2; that is expected here.
warnings.simplefilter("ignore")
clients = [redis.Redis(host="127.0.0.1", port=p, protocol=2, socket_timeout=10) for p in ports]

for i, c in enumerate(clients):
    assert c.ping() is True
    assert c.set(f"py:k{i}", f"v{i}") is True
    assert c.incr("py:counter") >= 1

for c in clients:
    # Reads are linearizable on every node: each sees every write acknowledged before it.
    assert c.mget([f"py:k{i}" for i in range(len(clients))]) == [
        f"v{i}".encode() for i in range(len(clients))
    ]
    assert int(c.get("py:counter")) == len(clients)

c = clients[0]
assert c.set("py:x", "1", nx=True) is True
assert c.set("py:x", "2", nx=True) is None
assert c.set("py:x", "3", xx=True) is True
assert c.incrby("py:x", 10) == 13
assert c.decrby("py:x", 3) == 10
try:
    c.incr("py:k0")
    raise AssertionError("INCR of a non-integer must fail")
except redis.ResponseError as e:
    assert "not an integer" in str(e)

p = c.pipeline(transaction=True)
p.set("py:t1", "a").incr("py:tc").get("py:t1")
assert p.execute() == [True, 1, b"a"]
p = c.pipeline(transaction=False)
for k in range(100):
    p.set(f"py:p{k}", k)
assert all(p.execute())
assert c.exists(*[f"py:p{k}" for k in range(100)]) == 100
assert c.delete("py:p0", "py:p1", "py:missing") == 2

raft = c.info("raft")
for field in ("node_id", "role", "term", "leader_id", "commit_index", "applied_index", "members"):
    assert field in raft, field
assert raft["role"] in ("leader", "follower", "candidate")
# redis-py parses a comma-separated value into a list.
assert raft["members"] in ([1, 2, 3], "1,2,3"), raft["members"]
assert c.config_get("save") is not None
assert c.client_setname("compat") is True
assert c.dbsize() >= 100
print("python redis", redis.__version__, ": all checks passed")
