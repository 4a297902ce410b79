"""/api/v1/users: my profile, password and account; user administration for admins."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from todo_api.auth import requires_role
from todo_api.context import AppContext
from todo_api.core.errors import problem_response
from todo_api.core.identity import CurrentUser
from todo_api.core.pagination import DEFAULT_LIMIT
from todo_api.core.schemas import Page
from todo_api.users.schemas import (
    AccountDeletion,
    AdminUserUpdate,
    PasswordChange,
    ProfileUpdate,
    User,
)
from todo_api.users.service import UserService
from todo_api.web.params import Cursor, Limit, SearchText


def provide_user_service(request: Request[Any, Any, Any]) -> UserService:
    """Per request: the service, told who is calling from where."""
    context = AppContext.of(request)
    return UserService(
        context.passwords,
        context.cursors,
        context.client(request),
        password_failures=context.settings.rate_limit_login_failures,
    )


PROVIDERS = {"users": Provide(provide_user_service, sync_to_thread=False)}


class MeController(Controller):
    path = "/api/v1/users/me"
    tags = ["users"]

    @get("/", operation_id="GetMe")
    async def get_me(
        self, request: Request[CurrentUser, Any, Any], users: NamedDependency[UserService]
    ) -> User:
        return await users.get(request.user.id)

    @patch(
        "/",
        operation_id="UpdateMe",
        responses={409: problem_response("An account with this email or username exists")},
    )
    async def update_me(
        self,
        data: JSONBody[ProfileUpdate],
        request: Request[CurrentUser, Any, Any],
        users: NamedDependency[UserService],
    ) -> User:
        return await users.update_profile(request.user, data)

    @delete(
        "/",
        operation_id="DeleteMe",
        summary="Delete my account and everything of mine",
        opt={"rate_limit": "reverify"},
    )
    async def delete_me(
        self,
        data: JSONBody[AccountDeletion],
        request: Request[CurrentUser, Any, Any],
        users: NamedDependency[UserService],
    ) -> None:
        await users.delete_account(request.user, data.password)

    @put(
        "/password",
        operation_id="ChangePassword",
        status_code=204,
        opt={"rate_limit": "reverify"},
    )
    async def change_password(
        self,
        data: JSONBody[PasswordChange],
        request: Request[CurrentUser, Any, Any],
        users: NamedDependency[UserService],
    ) -> None:
        await users.change_password(request.user, data)


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    guards = [requires_role("admin")]

    @get("/", operation_id="ListUsers")
    async def list_users(
        self,
        users: NamedDependency[UserService],
        q: SearchText = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Page[User]:
        return await users.list_users(q, limit, cursor)

    @get("/{user_id:uuid}", operation_id="GetUser")
    async def get_user(self, user_id: FromPath[UUID], users: NamedDependency[UserService]) -> User:
        return await users.get(user_id)

    @patch("/{user_id:uuid}", operation_id="AdministerUser")
    async def administer(
        self,
        user_id: FromPath[UUID],
        data: JSONBody[AdminUserUpdate],
        request: Request[CurrentUser, Any, Any],
        users: NamedDependency[UserService],
    ) -> User:
        return (await users.administer(request.user.as_actor(), user_id, data)).user
