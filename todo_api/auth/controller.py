"""/api/v1/auth: register, log in, refresh, log out, and the caller's device sessions and events."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, URLEncodedBody

from todo_api.auth.cookies import AUTH_PATH, clear_auth_cookies, refresh_cookie, set_auth_cookies
from todo_api.auth.guards import reject_cross_site
from todo_api.auth.schemas import (
    AnyPassword,
    AuthEvent,
    Login,
    LoginRequest,
    LoginResponse,
    OAuth2TokenResponse,
    Session,
    SessionRename,
    TokenResponse,
)
from todo_api.auth.service import AuthService
from todo_api.context import AppContext
from todo_api.core.errors import BadRequest, problem_response
from todo_api.core.identity import CurrentUser
from todo_api.core.pagination import DEFAULT_LIMIT
from todo_api.core.schemas import Page, Schema
from todo_api.users.schemas import RegisterRequest, User
from todo_api.users.service import UserService
from todo_api.web.params import Cursor, Limit

PUBLIC = {"exclude_from_auth": True}
WRONG_CREDENTIALS = {401: problem_response("Wrong login or password")}


def provide_auth_service(request: Request[Any, Any, Any]) -> AuthService:
    """Per request: the service, told who is calling from where."""
    context = AppContext.of(request)
    return AuthService(
        context.settings,
        context.keys,
        context.passwords,
        context.cursors,
        context.client(request),
    )


PROVIDERS = {"auth": Provide(provide_auth_service, sync_to_thread=False)}


class OAuth2PasswordForm(Schema, forbid_unknown_fields=False):
    """RFC 6749 §4.3 password grant, as Swagger UI's "Authorize" sends it (extra fields ignored)."""

    username: Login
    password: AnyPassword
    grant_type: str = "password"


class AuthController(Controller):
    path = AUTH_PATH
    tags = ["auth"]

    @post(
        "/register",
        operation_id="Register",
        opt={**PUBLIC, "rate_limit": "register"},
        responses={409: problem_response("An account with this email or username exists")},
    )
    async def register(
        self, data: JSONBody[RegisterRequest], users: NamedDependency[UserService]
    ) -> User:
        return await users.create(data)

    @post(
        "/login",
        operation_id="Login",
        status_code=200,
        guards=[reject_cross_site],
        opt={**PUBLIC, "rate_limit": "login"},
        responses=WRONG_CREDENTIALS,
    )
    async def login(
        self,
        data: JSONBody[LoginRequest],
        auth: NamedDependency[AuthService],
    ) -> Response[LoginResponse]:
        tokens, user = await auth.login(data)
        body = LoginResponse(
            access_token=tokens.access_token,
            expires_in=tokens.expires_in,
            session_id=tokens.session_id,
            user=user,
        )
        response = Response(body)
        set_auth_cookies(response, auth.settings, tokens)
        return response

    @post(
        "/token",
        operation_id="IssueToken",
        status_code=200,
        guards=[reject_cross_site],
        opt={**PUBLIC, "rate_limit": "token"},
        responses=WRONG_CREDENTIALS,
        summary="OAuth2 password grant (for Swagger UI's Authorize button)",
    )
    async def token(
        self,
        data: URLEncodedBody[OAuth2PasswordForm],
        auth: NamedDependency[AuthService],
    ) -> Response[OAuth2TokenResponse]:
        if data.grant_type != "password":
            raise BadRequest("Only grant_type=password is supported.")
        tokens, _ = await auth.login(LoginRequest(login=data.username, password=data.password))
        response = Response(
            OAuth2TokenResponse(access_token=tokens.access_token, expires_in=tokens.expires_in)
        )
        set_auth_cookies(response, auth.settings, tokens)
        return response

    @post(
        "/refresh",
        operation_id="RefreshToken",
        status_code=200,
        guards=[reject_cross_site],
        opt={**PUBLIC, "rate_limit": "refresh"},
        responses={401: problem_response("No refresh cookie, or it is not current")},
        summary="Rotate the refresh cookie and get a new access token",
    )
    async def refresh(
        self,
        request: Request[Any, Any, Any],
        auth: NamedDependency[AuthService],
    ) -> Response[TokenResponse]:
        tokens = await auth.refresh(refresh_cookie(request, auth.settings))
        response = Response(
            TokenResponse(
                access_token=tokens.access_token,
                expires_in=tokens.expires_in,
                session_id=tokens.session_id,
            )
        )
        set_auth_cookies(response, auth.settings, tokens)
        return response

    @post("/logout", operation_id="Logout", status_code=204, guards=[reject_cross_site])
    async def logout(
        self,
        request: Request[CurrentUser, Any, Any],
        auth: NamedDependency[AuthService],
    ) -> Response[None]:
        await auth.logout(request.user)
        response = Response(None, status_code=204)
        clear_auth_cookies(response, auth.settings)
        return response

    @post("/logout-all", operation_id="LogoutAll", status_code=204, guards=[reject_cross_site])
    async def logout_all(
        self,
        request: Request[CurrentUser, Any, Any],
        auth: NamedDependency[AuthService],
    ) -> Response[None]:
        await auth.logout_all(request.user)
        response = Response(None, status_code=204)
        clear_auth_cookies(response, auth.settings)
        return response

    @get("/sessions", operation_id="ListSessions")
    async def sessions(
        self, request: Request[CurrentUser, Any, Any], auth: NamedDependency[AuthService]
    ) -> Page[Session]:
        return await auth.sessions(request.user)

    @patch("/sessions/{session_id:uuid}", operation_id="RenameSession")
    async def rename_session(
        self,
        session_id: FromPath[UUID],
        data: JSONBody[SessionRename],
        request: Request[CurrentUser, Any, Any],
        auth: NamedDependency[AuthService],
    ) -> Session:
        return await auth.rename_session(request.user, session_id, data.device_name)

    @delete("/sessions/{session_id:uuid}", operation_id="RevokeSession")
    async def revoke_session(
        self,
        session_id: FromPath[UUID],
        request: Request[CurrentUser, Any, Any],
        auth: NamedDependency[AuthService],
    ) -> None:
        await auth.revoke_session(request.user, session_id)

    @get("/events", operation_id="ListAuthEvents")
    async def events(
        self,
        request: Request[CurrentUser, Any, Any],
        auth: NamedDependency[AuthService],
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Page[AuthEvent]:
        return await auth.events(request.user, limit, cursor)
