"""The real-HAProxy fixture starts even when a port it picked is taken before HAProxy binds it."""

from __future__ import annotations

import socket

import haproxy_fixture


def test_a_port_taken_before_haproxy_binds_it_is_picked_again(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        real = haproxy_fixture.free_port
        first = iter([taken])  # the frontend's port: already taken
        monkeypatch.setattr(haproxy_fixture, "free_port", lambda: next(first, None) or real())
        lab_gen = haproxy_fixture._lab(haproxy_fixture.HAProxyLab)
        lab = next(lab_gen)
        try:
            assert lab.port != taken
            assert lab.get()[0] == 200
        finally:
            lab_gen.close()
