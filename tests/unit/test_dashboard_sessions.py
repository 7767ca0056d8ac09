"""Signed-out sessions (`corral.dashboard.session.Revocations`,
`session_id`): a session signed out stays refused until no copy of its
cookie can be valid any more, whichever process learnt of it; what is
recorded names the session without giving away its nonce."""

from __future__ import annotations

import datetime as dt

from corral.dashboard.session import MAX_AGE_S, Auth, Revocations, Session, session_id

T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def test_the_recorded_name_is_stable_and_hides_the_nonce() -> None:
    session = Session.fresh(user="admin")
    assert session_id(session) == session_id(Session(nonce=session.nonce))
    assert session.nonce not in session_id(session)
    assert session_id(session) != session_id(Session.fresh(user="admin"))
    auth = Auth(secret_key="k", password="p")
    assert auth.csrf_token(session) != session_id(session)


def test_a_sign_out_holds_for_the_cookies_whole_life() -> None:
    r = Revocations()
    r.revoke("abc", T0)
    assert r.revoked("abc", T0)
    assert r.revoked("abc", T0 + dt.timedelta(seconds=MAX_AGE_S))  # the cookie's last second
    assert not r.revoked("abc", T0 + dt.timedelta(seconds=MAX_AGE_S + r.skew_s))
    assert not r.revoked("other", T0)


def test_sign_outs_read_from_the_audit_table_are_learnt_and_old_ones_dropped() -> None:
    r = Revocations(max_age_s=3600, skew_s=0)
    now = T0 + dt.timedelta(minutes=30)
    r.learn([("session:new", T0), ("session:old", T0 - dt.timedelta(hours=2)), ("job:1", T0)], now)
    assert r.revoked("new", now) and not r.revoked("old", now)
    assert not r.revoked("job:1", now) and not r.revoked("1", now)
    r.learn([], T0 + dt.timedelta(hours=2))
    assert not r.revoked("new", now)  # expired entries are dropped when it next learns


def test_it_reads_again_every_refresh() -> None:
    clock = [100.0]
    r = Revocations(refresh_s=10, clock=lambda: clock[0])
    assert r.due()  # never read (a new process): read at once
    r.reading()
    assert not r.due()
    clock[0] += 10
    assert r.due()
