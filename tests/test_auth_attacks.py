import httpx, pytest, jwt, asyncpg
from tests.factories import new_user, register, PASSWORD

pytestmark = pytest.mark.anyio


async def test_probe(client: httpx.AsyncClient, conn: asyncpg.Connection, settings) -> None:
    d = await new_user(client)

    def show(r):
        print(r.status_code, dict(r.headers), r.text[:600])

    show(await client.get("/api/v1/users/me"))
    show(await client.get("/api/v1/users/me", headers={"Authorization": "Bearer garbage"}))
    show(await client.post("/api/v1/auth/refresh"))
    show(
        await client.post(
            "/api/v1/auth/register", content=b"{bad", headers={"content-type": "application/json"}
        )
    )
    show(await client.post("/api/v1/auth/register", json=[1]))
    show(
        await client.post(
            "/api/v1/auth/register", json={"email": "a@b.co", "password": "x" * 10, "zzz": 1}
        )
    )
    show(
        await client.post(
            "/api/v1/auth/register", json={"email": "a\u0000@b.co", "password": "x" * 10}
        )
    )
    show(
        await client.post(
            "/api/v1/auth/register",
            content=b'{"email": "a@b.co", "password": "xxxxxxxxxx", "display_name": "\\ud800"}',
            headers={"content-type": "application/json"},
        )
    )
    show(
        await client.post(
            "/api/v1/auth/register", json={"email": "a@b.co", "password": "x" * (1024 * 1024 + 10)}
        )
    )
    print(jwt.encode({"a": 1}, None, algorithm="none"))
    print(
        jwt.encode(
            {"a": 1}, "k" * 32, algorithm="HS256", headers={"typ": "at+jwt", "crit": ["exp"]}
        )
    )
    print(await conn.fetch("select email, display_name from app_user"))
