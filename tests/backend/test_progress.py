import time

from backend.progress import Reporter


def test_eta_follows_the_current_stage_pace():
    """A stage that starts at step 500 of 1000 extrapolates from its own steps, not the total."""
    seen = []
    reporter = Reporter(seen.append)
    reporter.report("training detail", 500, 1000)
    time.sleep(0.05)
    reporter.report("training detail", 510, 1000)
    assert seen[0].eta_s is None
    assert seen[1].eta_s > 49 * 0.05 * 0.9  # 490 steps left at >= 5 ms per step
