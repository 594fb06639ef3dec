"""The test cluster itself: a real server on 127.0.0.1 that each test gets a fresh database of."""

import psycopg


def test_cluster_serves_fresh_databases_on_localhost(postgres, postgres_url):
    with psycopg.connect(postgres_url) as con:
        version = con.execute("SHOW server_version_num").fetchone()[0]
        address = con.execute("SELECT inet_server_addr()::text, inet_server_port()").fetchone()
        tables = con.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert int(version) >= 150000
    assert address == ("127.0.0.1/32", postgres.port)
    assert tables == 0
    assert postgres_url != postgres.url() and postgres_url.startswith(postgres.url("t_"))


def test_a_killed_owner_s_cluster_is_stopped_and_deleted_by_the_next_one(postgres):
    """A run killed outright (SIGKILL) cannot stop its cluster; the next cluster started sweeps it."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from .pg import PostgresCluster

    root = Path(__file__).resolve().parent.parent
    owner = subprocess.Popen(
        [sys.executable, "-c", "import time; from tests.pg import PostgresCluster\n"
         "c = PostgresCluster().start(); print(c.dir, flush=True); time.sleep(600)"],
        cwd=root, stdout=subprocess.PIPE, text=True,
    )
    folder = Path(owner.stdout.readline().strip())
    server_pid = int((folder / "data" / "postmaster.pid").read_text().splitlines()[0])
    os.kill(server_pid, 0)  # running
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=30)
    assert folder.exists()  # left behind: nothing ran at the owner's exit

    swept = PostgresCluster().sweep_orphans()

    assert folder in swept and not folder.exists()
    assert postgres.dir is not None and postgres.dir.exists()  # a live owner's cluster is left alone
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"PostgreSQL {server_pid} still runs after the sweep")
