#!/usr/bin/env python3
"""Why SQLite's writers take turns (issue 12, src/write_gate.rs), shown without dockhand.

N threads each commit a 1.5 KB row at a steady rate to one WAL file (synchronous=FULL),
either meeting SQLite's lock in its busy handler (`busy`), which sleeps 1, 2, 5, 10 ...
100 ms between tries, or waiting their turn in a FIFO first (`gate`), as dockhand does.
It prints each commit's latency: p50, p99, p99.9 and max.

    python3 scripts/sqlite-contention.py busy 8 60   # 8 writers x 60 commits/s
    python3 scripts/sqlite-contention.py gate 8 60

It uses Python's own SQLite; the busy handler is the same code in every build.
"""
import shutil, sqlite3, time, sys, os, tempfile, threading
mode = sys.argv[1]; writers = int(sys.argv[2]); rate = float(sys.argv[3]); dur = 15
assert mode in ("busy", "gate"), "mode is busy or gate"
path = os.path.join(tempfile.mkdtemp(dir=os.environ.get("TMPDIR", "/tmp")), "contention.db")
for ext in ("", "-wal", "-shm"):
    try: os.remove(path + ext)
    except FileNotFoundError: pass
init = sqlite3.connect(path, isolation_level=None)
init.execute("PRAGMA journal_mode=WAL")
init.execute("CREATE TABLE q(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, body TEXT, vis INTEGER)")
init.close()
class Fifo:
    def __init__(self): self.c = threading.Condition(); self.next = 0; self.serving = 0
    def __enter__(self):
        with self.c:
            t = self.next; self.next += 1
            while self.serving != t: self.c.wait()
    def __exit__(self, *a):
        with self.c:
            self.serving += 1; self.c.notify_all()
gate = Fifo()
lat = []; lk = threading.Lock()
def writer(w):
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    db.execute("PRAGMA synchronous=FULL")
    t0 = time.monotonic(); i = 0; mine = []
    while time.monotonic() - t0 < dur:
        due = t0 + i / rate
        now = time.monotonic()
        if due > now: time.sleep(due - now)
        s = time.monotonic()
        if mode == "gate":
            with gate: db.execute("INSERT INTO q(id, body, vis) VALUES (?, ?, 0)", (f"{w}-{i}", "x" * 1500))
        else:
            db.execute("INSERT INTO q(id, body, vis) VALUES (?, ?, 0)", (f"{w}-{i}", "x" * 1500))
        mine.append(time.monotonic() - s); i += 1
    with lk: lat.extend(mine)
ts = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
[t.start() for t in ts]; [t.join() for t in ts]
lat.sort(); n = len(lat)
print(f"{mode} {writers}x{rate}/s: n={n} p50={lat[n//2]*1e3:.2f} p99={lat[int(n*.99)]*1e3:.2f} p999={lat[int(n*.999)]*1e3:.2f} max={lat[-1]*1e3:.1f} ms over25={sum(1 for x in lat if x > .025)}")
shutil.rmtree(os.path.dirname(path))
