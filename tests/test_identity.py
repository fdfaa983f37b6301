"""Identity resolution rules, straight against the resolver (no HTTP)."""

from __future__ import annotations

import pytest
from django.db import transaction

from siyu.customers.identity import Resolver, make_claim
from siyu.customers.models import MergeConflict, Person, PersonMerge

pytestmark = pytest.mark.django_db


def resolve(*claim_lists):
    with transaction.atomic():
        lists = [[make_claim(k, v) for k, v in claims] for claims in claim_lists]
        return Resolver("test").resolve(lists, [{"reason": "test", "message_id": f"m{i}"} for i in range(len(lists))])


def test_new_ids_create_one_person_and_reuse_it():
    a = resolve([("user_id", "u1"), ("phone", "13800000001")])
    b = resolve([("phone", "+86 138 0000 0001")])
    assert a == b
    assert Person.objects.count() == 1


def test_two_anonymous_persons_merge_when_seen_together():
    p1, p2 = resolve([("anonymous_id", "d1")], [("anonymous_id", "d2")])
    assert p1 != p2
    [p] = resolve([("anonymous_id", "d1"), ("anonymous_id", "d2")])
    assert p == p1
    assert PersonMerge.objects.get().merged_id == p2
    assert Person.objects.get(pk=p2).merged_into_id == p1


def test_two_different_phones_are_never_merged_silently():
    p1, p2 = resolve([("user_id", "u1"), ("phone", "13800000001")], [("user_id", "u2"), ("phone", "13800000002")])
    # A message claims both user ids belong together: refused and queued.
    [p] = resolve([("user_id", "u1"), ("user_id", "u2")])
    assert p == p1
    assert PersonMerge.objects.count() == 0
    conflict = MergeConflict.objects.get()
    assert (conflict.person_a_id, conflict.person_b_id) == (p1, p2)
    assert conflict.conflicting_kinds == ["phone", "user_id"]


def test_shared_device_does_not_fuse_two_logged_in_people():
    [alice] = resolve([("anonymous_id", "family-ipad"), ("user_id", "alice")])
    [bob] = resolve([("anonymous_id", "family-ipad"), ("user_id", "bob")])
    assert alice != bob
    assert PersonMerge.objects.count() == 0
    assert MergeConflict.objects.count() == 0


def test_anonymous_person_becomes_identified_when_it_logs_in():
    [anon] = resolve([("anonymous_id", "d9")])
    [me] = resolve([("anonymous_id", "d9"), ("user_id", "me")])
    assert anon == me


def test_merges_chain_to_the_final_survivor():
    a, b, c = resolve([("anonymous_id", "a")], [("anonymous_id", "b")], [("anonymous_id", "c")])
    resolve([("anonymous_id", "a"), ("anonymous_id", "b")])
    resolve([("user_id", "u"), ("anonymous_id", "c")])
    [final] = resolve([("user_id", "u"), ("anonymous_id", "a")])
    assert final == c
    assert Person.objects.get(pk=b).merged_into_id == c


def test_claims_within_one_batch_resolve_consistently():
    p = resolve([("anonymous_id", "x")], [("anonymous_id", "x"), ("user_id", "ux")], [("user_id", "ux")])
    assert len(set(p)) == 1
    assert Person.objects.count() == 1


@pytest.mark.parametrize(("kind", "value"), [("phone", "12"), ("email", "nope"), ("user_id", ""), ("bogus", "1")])
def test_bad_ids_are_refused(kind, value):
    from siyu.privacy.crypto import InvalidValue

    with pytest.raises(InvalidValue):
        make_claim(kind, value)


def test_ids_above_the_small_int_cache_are_compared_by_value():
    # Python caches ints up to 256; person ids past that must still compare equal.
    Person.objects.bulk_create([Person() for _ in range(300)])
    [p] = resolve([("anonymous_id", "late"), ("user_id", "late-user")])
    assert p > 256
    [again] = resolve([("anonymous_id", "late"), ("user_id", "late-user"), ("phone", "13800000009")])
    assert again == p
    assert PersonMerge.objects.count() == 0
    assert not Person.objects.filter(merged_into_id=p).exists()


def test_conflict_between_persons_created_in_the_same_batch_is_queued():
    # Two people sign up and a third message claims they are one, all in one request.
    p1, p2, p3 = resolve(
        [("user_id", "amy"), ("phone", "13800000011")],
        [("user_id", "ben"), ("phone", "13800000022")],
        [("user_id", "amy"), ("user_id", "ben")],
    )
    assert p1 != p2 and p3 == p1
    conflict = MergeConflict.objects.get()
    assert {conflict.person_a_id, conflict.person_b_id} == {p1, p2}
    assert conflict.conflicting_kinds == ["phone", "user_id"]


def test_claims_made_from_text_are_kept_until_the_keys_are_read_again():
    from siyu.privacy import crypto

    first = make_claim("user_id", "u-kept")
    assert make_claim("user_id", "u-kept") is first
    assert make_claim("anonymous_id", "u-kept") is not first  # the kind is part of the id
    crypto.reset_key_cache()
    again = make_claim("user_id", "u-kept")
    assert again is not first and again == first


def test_the_identity_cache_answers_a_batch_of_ids_at_once():
    """``get_many``: the ids it holds (a hit in the old generation copied to the young one), the
    others in their order, a key given twice answered once, a key that is not a lookup hash too."""
    from siyu.customers.identity import IdentityCache

    cache = IdentityCache(limit=4)
    a, b, c = ("phone", "a" * 64), ("user_id", "b" * 64), ("email", "c" * 64)
    odd = ("user_id", "not-a-hash")
    cache.update({a: 1, odd: 9})  # the young generation reached half the limit: a and odd are old now
    cache.update({b: 2})
    assert len(cache._old) == 2 and len(cache._young) == 1
    found, missing = cache.get_many([a, c, b, a, odd, ("member_no", "d" * 64)])
    assert found == {a: 1, b: 2, odd: 9}
    assert missing == [c, ("member_no", "d" * 64)]
    assert IdentityCache.compact(a) in cache._young and odd in cache._young  # copied back
