"""Doctors do not wait on each other: maps in their own pool (one per person, the newest wins), places per account."""
import io
import threading

import pytest

from ml.errors import Overloaded
from ml.serving.explanation_pool import ClientGone, ExplanationPool, Replaced
from tests.helpers import (bearer_headers, coloured_face, crop_of, login, make_user, png_bytes, post_crop, post_photo,
                           result_page)
from web.doctor.serving import AccountPlaces, TooManyAtOnce, analysing, explanation_pool

WAIT = 60            # seconds an event may take on a busy machine before the test gives up


class Blocker:
    """Work that tells when it has started and finishes only when released."""

    def __init__(self, result="done"):
        self.started, self.release, self.result = threading.Event(), threading.Event(), result

    def __call__(self):
        self.started.set()
        assert self.release.wait(WAIT)
        return self.result


def in_thread(function):
    """Run `function` in a thread; return (thread, outcome dict with 'result' or 'error')."""
    outcome = {}

    def run():
        try:
            outcome["result"] = function()
        except Exception as error:           # the test looks at what the caller got
            outcome["error"] = error
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until(condition):
    """Wait on a condition that another thread makes true (checked each time the pool's state may have changed)."""
    done = threading.Event()
    for _ in range(WAIT * 100):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the condition never held")


def test_maps_run_on_the_pools_own_threads_and_failures_reach_the_caller():
    pool = ExplanationPool(workers=1)
    assert pool.submit("dan", lambda: threading.current_thread().name).startswith("facedx-maps-")

    def fails():
        raise ValueError("broken map")
    with pytest.raises(ValueError, match="broken map"):
        pool.submit("dan", fails)


def test_a_newer_map_of_the_same_person_replaces_the_waiting_one():
    pool = ExplanationPool(workers=1)
    busy = Blocker()
    first_thread, _ = in_thread(lambda: pool.submit("eve", busy))
    assert busy.started.wait(WAIT)                       # the pool's one thread is taken
    ran = []
    old_thread, old = in_thread(lambda: pool.submit("dan", lambda: ran.append("old")))
    wait_until(lambda: pool.waiting() == 1)
    new_thread, new = in_thread(lambda: pool.submit("dan", lambda: ran.append("new") or "new map"))
    old_thread.join(WAIT)
    assert isinstance(old.get("error"), Replaced)        # told at once, while the pool is still busy
    busy.release.set()
    new_thread.join(WAIT)
    first_thread.join(WAIT)
    assert new == {"result": "new map"} and ran == ["new"]


def test_a_map_whose_client_has_gone_is_dropped_before_it_starts():
    pool = ExplanationPool(workers=1)
    busy = Blocker()
    in_thread(lambda: pool.submit("eve", busy))
    assert busy.started.wait(WAIT)
    hung_up, ran = threading.Event(), []
    thread, outcome = in_thread(lambda: pool.submit("dan", lambda: ran.append(1), gone=hung_up.is_set))
    wait_until(lambda: pool.waiting() == 1)
    hung_up.set()
    thread.join(WAIT)
    assert isinstance(outcome.get("error"), ClientGone) and pool.waiting() == 0
    busy.release.set()
    assert pool.submit("eve", lambda: "next") == "next" and ran == []


def test_only_so_many_people_may_wait_for_a_map():
    pool = ExplanationPool(workers=1, max_waiting=2)
    busy = Blocker()
    in_thread(lambda: pool.submit("eve", busy))
    assert busy.started.wait(WAIT)
    waiting = [in_thread(lambda name=name: pool.submit(name, lambda: name)) for name in ("ann", "bob")]
    wait_until(lambda: pool.waiting() == 2)
    with pytest.raises(Overloaded):
        pool.submit("cal", lambda: "cal")
    busy.release.set()
    for thread, outcome in waiting:
        thread.join(WAIT)
    assert [outcome["result"] for _, outcome in waiting] == ["ann", "bob"]


def test_a_map_waits_for_the_photos_being_analysed_to_go_first():
    photos_done, asked, ran = threading.Event(), [], threading.Event()

    def yield_to(seconds):
        asked.append(seconds)
        return photos_done.wait(WAIT)
    pool = ExplanationPool(workers=1, yield_to=yield_to)
    thread, outcome = in_thread(lambda: pool.submit("dan", lambda: ran.set() or "map"))
    wait_until(lambda: asked)
    assert not ran.is_set() and asked == [2.0]              # held while photos are analysed (2 s at most)
    photos_done.set()
    thread.join(WAIT)
    assert outcome == {"result": "map"} and ran.is_set()


def test_waiting_for_idle_ends_when_the_last_photo_is_done():
    places = AccountPlaces(3)
    assert places.wait_idle(0) is True
    holding, release = threading.Event(), threading.Event()

    def analyse():
        with places.held("dan"):
            holding.set()
            release.wait(WAIT)
    worker, _ = in_thread(analyse)
    assert holding.wait(WAIT) and places.wait_idle(0) is False
    waiter, idle = in_thread(lambda: places.wait_idle(WAIT))
    release.set()
    waiter.join(WAIT)
    worker.join(WAIT)
    assert idle == {"result": True}


def test_an_account_holds_at_most_its_places_and_gets_them_back_after_a_failure():
    places = AccountPlaces(2)
    with places.held(1), places.held(1):
        with pytest.raises(TooManyAtOnce, match="2 photos being analysed"):
            with places.held(1):
                pass
        with places.held(2):                              # another account is not affected
            pass
    with pytest.raises(RuntimeError):
        with places.held(1):
            raise RuntimeError("the analysis failed")
    with places.held(1), places.held(1):                  # both places are free again
        pass


def doctor_id(app, name):
    from web.db import db
    from web.records import User

    with app.app_context():
        return db.session.execute(db.select(User).filter_by(username=name)).scalar_one().id


def test_one_account_with_every_place_taken_gets_429_while_another_is_served(app, client, tokens, active_model):
    make_user(app, "dora", "doctor")
    photo = png_bytes(coloured_face("alpha", seed=7))
    login(client, "dan")
    other = login(app.test_client(), "dora")
    with app.app_context():            # not around the requests: they would share its `g`
        held = [analysing(doctor_id(app, "dan")) for _ in range(app.config["PREDICTIONS_PER_ACCOUNT"])]
    for place in held:
        place.__enter__()
    try:
        page = post_photo(client, photo)
        assert page.status_code == 429 and "wait for their results" in page.get_data(as_text=True)
        api = client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]),
                          data={"image": (io.BytesIO(photo), "p.png")}, content_type="multipart/form-data")
        assert api.status_code == 429 and api.headers["Retry-After"] == "2"
        assert api.get_json()["error"] == "too_many_requests"
        assert post_photo(other, photo).status_code == 200
    finally:
        for place in held:
            place.__exit__(None, None, None)
    assert post_photo(client, photo).status_code == 200


def test_a_doctors_photo_is_analysed_while_the_map_pool_is_busy(app, client, tokens, active_model):
    """Predictions never wait behind maps: with the maps' thread held, a photo is still answered."""
    login(client, "dan")
    crop = crop_of(result_page(client))
    with app.app_context():
        pool = explanation_pool()
    busy = Blocker()
    holder, _ = in_thread(lambda: pool.submit("someone else", busy))
    assert busy.started.wait(WAIT)
    try:
        assert post_photo(client, png_bytes(coloured_face("beta", seed=8))).status_code == 200
        # The doctor's map waits for the pool; asking again replaces it: the first request gets 409.
        first_thread, first = in_thread(lambda: post_crop(login(app.test_client(), "dan"), crop, active_model))
        wait_until(lambda: pool.waiting() == 1)
        second_thread, second = in_thread(lambda: post_crop(login(app.test_client(), "dan"), crop, active_model))
        first_thread.join(WAIT)
        assert first["result"].status_code == 409 and "newer map" in first["result"].get_json()["message"]
    finally:
        busy.release.set()
    second_thread.join(WAIT)
    holder.join(WAIT)
    assert second["result"].status_code == 200 and second["result"].get_json()["overlay_png_base64"]


def test_a_client_that_hung_up_is_noticed_and_one_still_there_is_not():
    import socket

    from web.doctor.serving import client_gone

    assert client_gone({})() is False                     # not under gunicorn: never
    ours, theirs = socket.socketpair()
    try:
        gone = client_gone({"gunicorn.socket": ours})
        assert gone() is False
        theirs.sendall(b"G")                              # the next request of a kept-alive connection
        assert gone() is False and ours.recv(1) == b"G"
        theirs.close()
        assert gone() is True
    finally:
        ours.close()
    assert gone() is True                                 # a socket closed here counts as gone too
