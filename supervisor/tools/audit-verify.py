#!/usr/bin/env python3
"""Check hearth's audit log without hearth: python3 audit-verify.py /var/lib/hearth/hearth.db
The encoding is documented in supervisor/src/audit/chain.rs."""
import hashlib, sqlite3, struct, sys

def lp(s):
    b = s.encode()
    return struct.pack(">Q", len(b)) + b

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
prev, n = "0" * 64, 0
for seq, time, actor, action, subject, detail, prev_hash, h in db.execute(
        "SELECT seq, time, actor, action, subject, detail, prev_hash, hash FROM audit_log ORDER BY seq"):
    n += 1
    msg = (bytes.fromhex(prev) + struct.pack(">Q", n) + lp(time) + lp(actor) + lp(action)
           + (b"\0" if subject is None else b"\1" + lp(subject)) + lp(detail))
    if seq != n or prev_hash != prev or hashlib.sha256(msg).hexdigest() != h:
        sys.exit(f"audit log tampered: entry {n}")
    prev = h
print(f"audit log intact: {n} entries, head {prev}")
