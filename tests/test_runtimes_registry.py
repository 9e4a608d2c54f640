"""The registry answers every question about tier names: declared or not, the order tried, where a call starts."""

import pytest

from tierflow.runtimes.config import TierConfig, default_tiers
from tierflow.runtimes.errors import TierUnavailableError, UnknownTierError
from tierflow.runtimes.registry import TierRegistry

CLOUD = TierConfig(kind="openai", base_url="http://127.0.0.1:9/v1", model="m", strength=5)


def registry(**extra: TierConfig) -> TierRegistry:
    return TierRegistry({**default_tiers(), **extra}, "mobile")


def test_names_are_validated_once_here_and_the_error_says_who_named_them():
    assert registry().validate(["edge", None, "edge"]) == ["edge", "mobile"]  # None is the default tier
    with pytest.raises(UnknownTierError, match=r"routing.order names unknown tier 'gpu'; declared tiers: edge"):
        registry().validate(["tiny", "gpu"], who="routing.order")
    with pytest.raises(UnknownTierError, match="default_tier names unknown tier 'gpu'"):
        TierRegistry(default_tiers(), "gpu")


def test_the_order_puts_a_forced_tier_then_the_agents_own_first():
    tiers = registry(cloud=CLOUD)
    assert tiers.tier_order() == ["mobile", "tiny", "edge", "cloud"]  # default tier, then by strength
    assert tiers.tier_order(["cloud", "tiny"]) == ["cloud", "tiny", "mobile", "edge"]
    assert tiers.tier_order(["cloud"], ["edge"]) == ["edge", "cloud", "tiny", "mobile"]
    assert tiers.tier_order(first=["edge", "tiny"])[:2] == ["tiny", "edge"]  # the later name wins the head


def test_a_private_call_starts_on_the_first_tier_cleared_for_it():
    tiers = registry(cloud=CLOUD)
    assert tiers.serving_tier(["cloud", "edge"]) == "cloud"
    assert tiers.serving_tier(["cloud", "edge"], private=True) == "edge"
    assert tiers.serving_tier(preferred="cloud", private=True) == "mobile"
    only_cloud = TierRegistry({"cloud": CLOUD}, "cloud")
    assert only_cloud.serving_tier(private=True) == "cloud"  # none is cleared: the router refuses the call itself


@pytest.mark.model
def test_only_the_tiers_asked_about_are_checked(tmp_path):
    broken = TierConfig(kind="llamacpp", model_path=str(tmp_path / "missing.gguf"))
    tiers = registry(broken=broken)
    tiers.ensure_usable(["tiny"])  # the broken tier is not reached, so it does not stop this run
    with pytest.raises(TierUnavailableError, match=r"broken: .*missing\.gguf does not exist"):
        tiers.ensure_usable(["tiny", "broken"])
    with pytest.raises(UnknownTierError):
        tiers.ensure_usable(["gpu"])
