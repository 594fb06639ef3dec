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
