"""The defaults chain (option → member setting → server default → model default), a pure function."""

from __future__ import annotations

from bot.hub import HubModel
from bot.member_settings import MemberDefaults, Options, Origin, ServerDefaults, resolve

WIDE = HubModel(
    id="wide",
    provider="x",
    aspect_ratios=["auto", "1:1", "16:9"],
    credits={"1K": 8, "2K": 10, "4K": 12},
    default_aspect="auto",
    default_tier="1K",
)
SQUARE = HubModel(
    id="square",
    provider="x",
    aspect_ratios=["1:1"],
    credits={"2K": 5},
    default_aspect="1:1",
    default_tier="2K",
)
SERVER = ServerDefaults(model="wide", aspect="auto", resolution="1K", quality="auto")


def test_each_value_comes_from_the_first_link_that_has_one() -> None:
    nothing = resolve(Options(), MemberDefaults(), SERVER, [WIDE, SQUARE])
    assert (nothing.model.value, nothing.model.origin) == ("wide", Origin.SERVER)
    assert (nothing.aspect.value, nothing.aspect.origin) == ("auto", Origin.SERVER)
    assert (nothing.count.value, nothing.count.origin) == (1, Origin.MODEL)
    assert (nothing.visibility.value, nothing.visibility.origin) == ("public", Origin.SERVER)
    assert nothing.skipped == ()

    mine = MemberDefaults(aspect="16:9", resolution="4K", quality="high", count=3, visibility="private")
    member = resolve(Options(), mine, SERVER, [WIDE, SQUARE])
    assert [
        (c.value, c.origin) for c in (member.aspect, member.resolution, member.quality, member.count)
    ] == [
        ("16:9", Origin.MEMBER),
        ("4K", Origin.MEMBER),
        ("high", Origin.MEMBER),
        (3, Origin.MEMBER),
    ]
    assert member.visibility.value == "private"

    typed = resolve(Options(aspect="1:1", resolution="2k", count=2), mine, SERVER, [WIDE, SQUARE])
    assert (typed.aspect.value, typed.aspect.origin) == ("1:1", Origin.OPTION)
    assert (typed.resolution.value, typed.resolution.origin) == ("2K", Origin.OPTION)
    assert (typed.count.value, typed.count.origin) == (2, Origin.OPTION)
    assert (typed.quality.value, typed.quality.origin) == ("high", Origin.MEMBER)


def test_settings_the_chosen_model_cannot_use_fall_down_the_chain_and_are_reported() -> None:
    # The member's model left the hub: the server's is used, and the member is told.
    gone = resolve(Options(), MemberDefaults(model="retired", aspect="16:9"), SERVER, [WIDE])
    assert (gone.model.value, gone.model.origin) == ("wide", Origin.SERVER)
    assert gone.found == WIDE and ("model", "retired") in gone.skipped
    assert (gone.aspect.value, gone.aspect.origin) == ("16:9", Origin.MEMBER)

    # A model that offers neither the member's nor the server's aspect and tier: the model's own defaults.
    square = resolve(
        Options(model="square"), MemberDefaults(aspect="16:9", resolution="4K"), SERVER, [WIDE, SQUARE]
    )
    assert (square.aspect.value, square.aspect.origin) == ("1:1", Origin.MODEL)
    assert (square.resolution.value, square.resolution.origin) == ("2K", Origin.MODEL)
    assert square.skipped == (("aspect", "16:9"), ("resolution", "4K"))

    # An option is never passed over (the caller refuses it), and an unknown model leaves `found` empty.
    typed = resolve(Options(model="nope", aspect="7:3"), MemberDefaults(), SERVER, [WIDE])
    assert typed.found is None and typed.model.value == "nope" and typed.aspect.value == "7:3"
