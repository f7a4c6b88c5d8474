"""Users and failed PINs (replicated: derived from the journal) and node-local sessions."""

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class User(Base):
    __tablename__ = "users"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(120), nullable=False)
    role: Mapped[str] = mapped_column(String(10), nullable=False)
    pin_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class AuthSession(Base):
    """A login on this node. Only the token's sha256 is stored."""

    __tablename__ = "auth_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    created_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # users.version when the session began: a PIN reset, deactivation or demotion journaled
    # later (a higher version) ends it on every till, and replaying the journal (a rebuild)
    # never ends a session begun after that change.
    user_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (Index("ix_auth_sessions_username", "username"),)


class LoginFailure(Base):
    """One journaled wrong PIN (`user.login_failed`) or a clear of them (`user.unlock`,
    a PIN reset): kind "failed" or "cleared", at the time of the till it happened at.
    `lockout.py` turns a user's rows into a back-off."""

    __tablename__ = "login_failures"
    event_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    at_ms: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (Index("ix_login_failures_user_at", "username", "at_ms"),)
