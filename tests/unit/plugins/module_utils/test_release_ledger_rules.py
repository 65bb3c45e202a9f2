"""Unit tests for the private module_utils.release_ledger rules (no files)."""

from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.vmfleet.deploy.plugins.module_utils.release_ledger import (
    LedgerError,
    apply_event,
    check_service,
    deploy_id_stamp,
    empty_ledger,
    normalize_release,
    parse_ledger,
    previous_release,
    render_ledger,
    same_release,
    utc_stamp,
)

T0 = datetime.datetime(2026, 11, 28, 3, 15, 0, tzinfo=datetime.UTC)


def at(minutes):
    return T0 + datetime.timedelta(minutes=minutes)


def rel(version, slot="blue", digest=None, **extra):
    release = {"version": version, "slot": slot, "runtime": "docker", "image": "reg/catalog:%s" % version}
    release["digest"] = digest if digest is not None else "sha256:%s" % version.replace(".", "")
    release.update(extra)
    return release


def run(ledger, *events, **kwargs):
    """Apply (event, release[, reason]) tuples in turn, a minute apart."""
    for minute, event in enumerate(events):
        event, release, reason = (event + (None,))[:3]
        ledger = apply_event(ledger, event, release=release, reason=reason, now=at(minute), **kwargs)[0]
    return ledger


def versions(history):
    return [(e.get("event"), e["version"]) for e in history]


# --- same_release ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, same",
    [
        ({"version": "1.0"}, {"version": "1.0"}, True),
        ({"version": "1.0"}, {"version": "1.1"}, False),
        ({"version": "1.0", "digest": "sha256:a"}, {"version": "1.0", "digest": "sha256:a"}, True),
        # both digests known and different: a rebuilt image of the same version is another release
        ({"version": "1.0", "digest": "sha256:a"}, {"version": "1.0", "digest": "sha256:b"}, False),
        # one side without a digest: the version alone decides
        ({"version": "1.0", "digest": "sha256:a"}, {"version": "1.0", "digest": ""}, True),
        ({"version": "1.0", "digest": None}, {"version": "1.0", "digest": "sha256:b"}, True),
        ({"version": "1.0"}, {"version": "1.0", "digest": "sha256:b"}, True),
        # same digest never makes different versions the same
        ({"version": "1.0", "digest": "sha256:a"}, {"version": "1.1", "digest": "sha256:a"}, False),
        ({"version": "1.0"}, None, False),
        ({"version": ""}, {"version": ""}, False),
    ],
)
def test_same_release_compares_digests_only_when_both_known(a, b, same):
    assert same_release(a, b) is same
    swapped_a, swapped_b = b, a
    assert same_release(swapped_a, swapped_b) is same


# --- previous_release -----------------------------------------------------------------------------


def test_previous_is_newest_served_other_than_current_without_event_keys():
    history = [
        {"event": "served", "at": "t3", **rel("1.2.0")},
        {"event": "served", "at": "t2", **rel("1.1.0")},
        {"event": "served", "at": "t1", **rel("1.0.0")},
    ]
    assert previous_release(history, rel("1.2.0")) == rel("1.1.0")
    assert previous_release(history, None) == rel("1.2.0")
    assert previous_release([], rel("1.2.0")) is None


def test_previous_skips_failed_and_rolled_back_releases_of_newer_entries():
    history = [
        {"event": "served", "at": "t4", **rel("1.0.0")},
        {"event": "rolled_back", "at": "t4", "reason": "errors", **rel("1.1.0")},
        {"event": "served", "at": "t3", **rel("1.1.0")},
        {"event": "failed", "at": "t2", "reason": "gate", **rel("0.9.0")},
        {"event": "served", "at": "t1", **rel("0.9.0")},
        {"event": "served", "at": "t0", **rel("0.8.0")},
    ]
    assert previous_release(history, rel("1.0.0")) == rel("0.8.0")


def test_previous_a_rolled_back_release_served_again_later_is_a_candidate():
    history = [
        {"event": "served", "at": "t5", **rel("1.2.0")},
        {"event": "served", "at": "t4", **rel("1.1.0")},  # newer than its rollback
        {"event": "rolled_back", "at": "t3", "reason": "x", **rel("1.1.0")},
        {"event": "served", "at": "t2", **rel("1.1.0")},
    ]
    assert previous_release(history, rel("1.2.0")) == rel("1.1.0")


def test_previous_bad_mark_uses_digest_identity():
    # 1.1.0 with digest b was rolled back; 1.1.0 with digest a served before and is still good
    history = [
        {"event": "served", "at": "t3", **rel("1.2.0")},
        {"event": "rolled_back", "at": "t2", "reason": "x", **rel("1.1.0", digest="sha256:b")},
        {"event": "served", "at": "t1", **rel("1.1.0", digest="sha256:a")},
    ]
    assert previous_release(history, rel("1.2.0"))["digest"] == "sha256:a"
    # without a digest on the bad entry, the version alone marks every 1.1.0
    history[1]["digest"] = ""
    assert previous_release(history, rel("1.2.0")) is None


def test_previous_legacy_entries_without_event_count_as_served():
    history = [rel("1.1.0", deployed_at="t2"), rel("1.0.0", deployed_at="t1")]
    assert previous_release(history, history[0]) == rel("1.0.0", deployed_at="t1")


def test_previous_ignores_unknown_events_and_non_dicts():
    history = ["junk", {"event": "drained", **rel("1.1.0")}, {"event": "served", **rel("1.0.0")}]
    assert previous_release(history, rel("1.2.0"))["version"] == "1.0.0"


# --- apply_event: served --------------------------------------------------------------------------


def test_first_served_becomes_current_with_timestamps():
    ledger, changed = apply_event(empty_ledger("catalog"), "served", release=rel("1.0.0"), now=T0)
    assert changed is True
    assert ledger["current"] == dict(rel("1.0.0"), deployed_at="2026-11-28T03:15:00Z", deploy_id="20261128T031500Z")
    assert ledger["slot"] == "blue"
    assert ledger["previous"] is None
    assert ledger["updated_at"] == "2026-11-28T03:15:00Z"
    assert ledger["history"] == [dict(ledger["current"], event="served", at="2026-11-28T03:15:00Z")]


def test_served_keeps_the_given_deploy_id():
    ledger = apply_event(empty_ledger("catalog"), "served", release=rel("1.0.0", deploy_id="awx-42"), now=T0)[0]
    assert ledger["current"]["deploy_id"] == "awx-42"
    assert ledger["history"][0]["deploy_id"] == "awx-42"


def test_served_same_release_same_slot_and_runtime_is_no_change():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")))
    again, changed = apply_event(ledger, "served", release=rel("1.0.0", deploy_id="other"), now=at(5))
    assert changed is False
    assert again == ledger


@pytest.mark.parametrize(
    "change",
    [{"slot": "green"}, {"runtime": "podman"}, {"digest": "sha256:rebuilt"}, {"version": "1.0.1"}],
)
def test_served_other_slot_runtime_digest_or_version_is_a_change(change):
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")))
    after, changed = apply_event(ledger, "served", release=dict(rel("1.0.0"), **change), now=at(5))
    assert changed is True
    assert len(after["history"]) == 2
    for key, value in change.items():
        assert after["current"][key] == value


def test_served_new_version_makes_old_current_previous():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")), ("served", rel("1.1.0", slot="green")))
    assert ledger["current"]["version"] == "1.1.0"
    assert ledger["slot"] == "green"
    assert ledger["previous"]["version"] == "1.0.0"
    assert ledger["previous"]["deployed_at"] == "2026-11-28T03:15:00Z"
    assert "event" not in ledger["previous"] and "at" not in ledger["previous"]


def test_served_without_slot_keeps_top_level_slot():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0", slot="green")), ("served", rel("1.1.0", slot=None)))
    assert ledger["slot"] == "green"
    assert ledger["current"]["version"] == "1.1.0"


# --- apply_event: failed --------------------------------------------------------------------------


def test_failed_keeps_current_previous_and_slot_and_records_reason():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")), ("served", rel("1.1.0", slot="green")))
    after, changed = apply_event(ledger, "failed", release=rel("1.2.0-bad"), reason="health gate failed", now=at(9))
    assert changed is True
    for key in ("current", "previous", "slot"):
        assert after[key] == ledger[key]
    assert after["history"][0] == dict(
        rel("1.2.0-bad"), event="failed", at=utc_stamp(at(9)), reason="health gate failed"
    )
    assert after["history"][1:] == ledger["history"]
    assert after["updated_at"] == utc_stamp(at(9))
    # every failure is an event
    again, changed = apply_event(after, "failed", release=rel("1.2.0-bad"), reason="health gate failed", now=at(10))
    assert changed is True and len(again["history"]) == len(after["history"]) + 1


def test_after_a_failed_release_previous_is_still_the_last_good_one():
    ledger = run(
        empty_ledger("catalog"),
        ("served", rel("1.0.0")),
        ("served", rel("1.1.0", slot="green")),
        ("failed", rel("1.2.0-bad"), "gate"),
        ("served", rel("1.2.0", slot="blue")),
    )
    assert ledger["current"]["version"] == "1.2.0"
    assert ledger["previous"]["version"] == "1.1.0"
    ledger = run(ledger, ("served", rel("1.3.0", slot="green")))
    assert ledger["previous"]["version"] == "1.2.0"


def test_a_release_that_failed_then_served_is_not_previous_before_it_served_again():
    ledger = run(
        empty_ledger("catalog"),
        ("served", rel("1.0.0")),
        ("served", rel("1.1.0")),
        ("failed", rel("1.0.0"), "cannot start on the new kernel"),
        ("served", rel("1.2.0")),
    )
    # 1.1.0 is the newest good one; 1.0.0 failed after it served
    assert ledger["previous"]["version"] == "1.1.0"
    ledger = run(ledger, ("failed", rel("1.1.0"), "x"), ("served", rel("1.3.0")))
    assert ledger["previous"]["version"] == "1.2.0"


# --- apply_event: rolled_back ---------------------------------------------------------------------


def test_rolled_back_restores_target_and_never_makes_the_bad_release_previous():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")), ("served", rel("1.1.0", slot="green")))
    after, changed = apply_event(ledger, "rolled_back", release=ledger["previous"], reason="5xx rate 12 %", now=at(7))
    assert changed is True
    assert after["current"]["version"] == "1.0.0"
    assert after["current"]["deployed_at"] == utc_stamp(at(7))  # serves again from now
    assert after["slot"] == "blue"
    assert after["previous"] is None  # not 1.1.0
    assert versions(after["history"]) == [
        ("served", "1.0.0"),
        ("rolled_back", "1.1.0"),
        ("served", "1.1.0"),
        ("served", "1.0.0"),
    ]
    rolled = after["history"][1]
    assert rolled["reason"] == "5xx rate 12 %" and rolled["at"] == utc_stamp(at(7))
    assert rolled["slot"] == "green" and rolled["deployed_at"] == utc_stamp(at(1))
    assert "reason" not in after["history"][0]


def test_rolled_back_previous_is_an_older_good_release():
    ledger = run(
        empty_ledger("catalog"),
        ("served", rel("0.9.0")),
        ("served", rel("1.0.0", slot="green")),
        ("served", rel("1.1.0", slot="blue")),
        ("rolled_back", rel("1.0.0", slot="green"), "errors"),
    )
    assert ledger["current"]["version"] == "1.0.0"
    assert ledger["previous"]["version"] == "0.9.0"


def test_rolled_back_release_redeployed_is_a_valid_previous_again_after_a_newer_deploy():
    ledger = run(
        empty_ledger("catalog"),
        ("served", rel("1.0.0")),
        ("served", rel("1.1.0", slot="green")),
        ("rolled_back", rel("1.0.0"), "errors"),
        ("served", rel("1.1.0", slot="green")),  # fixed config, same image, served fine
    )
    assert ledger["current"]["version"] == "1.1.0"
    assert ledger["previous"]["version"] == "1.0.0"
    ledger = run(ledger, ("served", rel("1.2.0", slot="blue")))
    assert ledger["previous"]["version"] == "1.1.0"


def test_rolled_back_to_the_current_release_is_no_change():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")), ("failed", rel("1.1.0"), "gate"))
    after, changed = apply_event(ledger, "rolled_back", release=rel("1.0.0"), reason="abort", now=at(9))
    assert changed is False
    assert after == ledger


def test_rolled_back_without_current_records_only_the_served_target():
    after, changed = apply_event(empty_ledger("catalog"), "rolled_back", release=rel("1.0.0"), reason="x", now=T0)
    assert changed is True
    assert versions(after["history"]) == [("served", "1.0.0")]
    assert after["current"]["version"] == "1.0.0"


def test_rolled_back_to_same_release_in_other_slot_records_both():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0", slot="green")))
    after, changed = apply_event(
        ledger, "rolled_back", release=rel("1.0.0", slot="blue"), reason="flip back", now=at(3)
    )
    assert changed is True
    assert [(e["event"], e["slot"]) for e in after["history"][:2]] == [("served", "blue"), ("rolled_back", "green")]
    assert after["slot"] == "blue"


# --- history, legacy ------------------------------------------------------------------------------


def test_history_is_cut_to_the_newest_entries():
    ledger = empty_ledger("catalog")
    for minute in range(6):
        ledger = apply_event(ledger, "served", release=rel("1.0.%d" % minute), now=at(minute), history_size=3)[0]
    assert [e["version"] for e in ledger["history"]] == ["1.0.5", "1.0.4", "1.0.3"]
    assert ledger["previous"]["version"] == "1.0.4"


def test_history_size_one_still_knows_the_release_before():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")), ("served", rel("1.1.0")), history_size=1)
    assert versions(ledger["history"]) == [("served", "1.1.0")]
    assert ledger["previous"]["version"] == "1.0.0"


@pytest.mark.parametrize("size", [0, -1, True, "3"])
def test_history_size_must_be_positive(size):
    with pytest.raises(LedgerError, match="history_size must be"):
        apply_event(empty_ledger("catalog"), "served", release=rel("1.0.0"), history_size=size)


def test_legacy_ledger_is_updated_with_events():
    old_current = rel("1.1.0", deploy_id="d2", deployed_at="2026-01-02T00:00:00Z")
    legacy = {
        "service": "catalog",
        "slot": "blue",
        "current": old_current,
        "previous": rel("1.0.0", deploy_id="d1", deployed_at="2026-01-01T00:00:00Z"),
        "history": [old_current, rel("1.0.0", deploy_id="d1", deployed_at="2026-01-01T00:00:00Z")],
        "updated_at": "2026-01-02T00:00:00Z",
    }
    ledger = parse_ledger(json.dumps(legacy), "/x/ledger.json", "catalog")
    assert ledger == legacy
    after, changed = apply_event(ledger, "served", release=rel("1.2.0", slot="green"), now=T0)
    assert changed is True
    assert after["previous"] == old_current
    assert versions(after["history"]) == [("served", "1.2.0"), (None, "1.1.0"), (None, "1.0.0")]
    after = apply_event(after, "rolled_back", release=after["previous"], reason="bad", now=at(1))[0]
    assert after["current"]["version"] == "1.1.0"
    assert after["previous"]["version"] == "1.0.0"


# --- release validation ---------------------------------------------------------------------------


def test_normalize_release_stores_strings_keeps_other_keys_and_drops_event_keys():
    release = normalize_release(
        {
            "version": 2,
            "slot": "green",
            "digest": None,
            "team": {"owner": "shop"},
            "event": "served",
            "at": "t",
            "reason": "r",
            "deployed_at": "old",
        }
    )
    assert release == {"version": "2", "slot": "green", "digest": None, "team": {"owner": "shop"}}


@pytest.mark.parametrize(
    "release, message",
    [
        ({"slot": "blue"}, "release.version must be a non-empty string, got None"),
        ({"version": ""}, "release.version must be a non-empty string, got ''"),
        ({"version": "  "}, "release.version must be a non-empty string"),
        ({"version": 1.1}, r"release.version must be a string, got 1.1 \(a number\) \(quote it"),
        ({"version": "1.0", "slot": "purple"}, "release.slot must be blue or green, got 'purple'"),
        ({"version": "1.0", "image": ["a"]}, r"release.image must be a string, got \['a'\] \(a list\)"),
        ({"version": "1.0", "runtime": True}, "release.runtime must be a string, got True"),
        ("1.0", "release must be a dictionary"),
    ],
)
def test_normalize_release_refuses_bad_releases(release, message):
    with pytest.raises(LedgerError, match=message):
        normalize_release(release)


@pytest.mark.parametrize("event", ["failed", "rolled_back"])
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_failed_and_rolled_back_need_a_reason(event, reason):
    with pytest.raises(LedgerError, match="reason is required with event=%s" % event):
        apply_event(empty_ledger("catalog"), event, release=rel("1.0.0"), reason=reason)


def test_write_events_need_a_release_and_a_known_event():
    with pytest.raises(LedgerError, match="release is required with event=served"):
        apply_event(empty_ledger("catalog"), "served")
    with pytest.raises(LedgerError, match="event must be one of read, served, failed, rolled_back"):
        apply_event(empty_ledger("catalog"), "deployed", release=rel("1.0.0"))


def test_read_never_changes_the_ledger():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")))
    after, changed = apply_event(ledger, "read", release=rel("9.9.9"))
    assert changed is False and after == ledger and after is not ledger


@pytest.mark.parametrize("name", ["catalog", "cart-api", "a.b_c", "9lives"])
def test_service_names_accepted(name):
    assert check_service(name) == name


@pytest.mark.parametrize("name", ["../x", "", ".hidden", "a/b", "-x", "a b", None])
def test_service_names_refused(name):
    with pytest.raises(LedgerError, match="service must be a name like catalog, got"):
        check_service(name)


# --- parse and render -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_missing_or_empty_file_is_the_empty_ledger(text):
    assert parse_ledger(text, "/x/ledger.json", "catalog") == {
        "service": "catalog",
        "slot": None,
        "current": None,
        "previous": None,
        "history": [],
        "updated_at": None,
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"the ledger /x/ledger.json is not valid JSON \(.*\); fix or remove it, it is not overwritten"),
        ("[1, 2]", "the ledger /x/ledger.json is not a JSON object but a list"),
        ('{"current": "1.0"}', "the ledger /x/ledger.json has a current that is a string, expected an object or null"),
        ('{"history": {}}', "the ledger /x/ledger.json has a history that is an object, expected a list"),
        ('{"history": [1]}', "the ledger /x/ledger.json has history entry 0 that is a number"),
    ],
)
def test_broken_ledgers_are_clear_errors(text, message):
    with pytest.raises(LedgerError, match=message):
        parse_ledger(text, "/x/ledger.json", "catalog")


def test_render_is_sorted_indented_json_with_newline():
    text = render_ledger({"b": 1, "a": {"z": None, "y": "é"}})
    assert text == '{\n  "a": {\n    "y": "é",\n    "z": null\n  },\n  "b": 1\n}\n'


def test_stamps_are_utc():
    local = datetime.datetime(2026, 11, 28, 4, 15, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert utc_stamp(local) == "2026-11-28T03:15:00Z"
    assert deploy_id_stamp(local) == "20261128T031500Z"
    assert utc_stamp(None).endswith("Z")


def test_analysed_is_history_only_and_never_makes_a_release_bad():
    ledger = run(empty_ledger("catalog"), ("served", rel("1.0.0")), ("served", rel("1.1.0", slot="green")))
    verdict = "step 1 (10 %): pass, canary 5xx 0.0 % (0 of 800), 12 ms; stable 0.0 % (0 of 7200), 11 ms"
    after, changed = apply_event(ledger, "analysed", release=rel("1.2.0", slot="blue"), reason=verdict, now=at(9))
    assert changed is True
    assert after["current"] == ledger["current"] and after["slot"] == ledger["slot"]
    assert after["previous"] == ledger["previous"]
    assert (after["history"][0]["event"], after["history"][0]["version"]) == ("analysed", "1.2.0")
    assert after["history"][0]["reason"] == verdict
    # An analysed release that later serves is not held against it: it can be previous.
    served = run(after, ("served", rel("1.2.0", slot="blue")), ("served", rel("1.3.0", slot="green")))
    assert served["previous"]["version"] == "1.2.0"
    with pytest.raises(LedgerError, match="reason is required with event=analysed"):
        apply_event(ledger, "analysed", release=rel("1.2.0"), reason="  ")
