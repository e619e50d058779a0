"""scripts/bench.py runs both servers and prints its table (speed itself is never asserted)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED_PATH = Path("shared") / "baseline" / "seed_server.py"


def _find_seed() -> Path:
    """The seed server: $TRIO_CHAT_SEED_SERVER, or `shared/` beside this clone or above it."""
    given = os.environ.get("TRIO_CHAT_SEED_SERVER")
    if given:
        return Path(given)
    candidates = [folder / SEED_PATH for folder in ROOT.parents]
    candidates.append(Path("/work") / SEED_PATH)  # where the workplace keeps it
    return next((c for c in candidates if c.is_file()), candidates[0])


SEED = _find_seed()
TINY = [
    "--quick",
    "--receivers=3",
    "--messages=40",
    "--rate=200",
    "--quiet=0.3",
    "--storm=3",
    "--sessions=6",
    "--idle-window=0.2",
    "--clock-skew=1",
    "--persist-messages=60",
    "--processes=1",
    "--loss-receivers=2",
    "--loss-duration=1",
]


def run_script(
    name: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One of `scripts/`, run as a person would, from the project's folder."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run_script("bench.py", *args)


def test_quick_bench_prints_its_table_and_the_fanout_ratio() -> None:
    assert SEED.is_file(), f"the seed server is expected at {SEED}"
    result = run_bench(*TINY, f"--baseline={SEED}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"fanout ratio vs seed: \d+\.\d\d", lines[-1])
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if "|" in line]
    header, _rule, *body = rows
    assert header == ["workload", "metric", "seed", "trio-chat", "trio/seed", "goal"]
    workloads = {row[0] for row in body}
    assert workloads == {"fanout", "latency", "isolation", "scale", "persistence", "loss"}
    table = {(row[0], row[1]): row for row in body}
    # Correctness, not speed: trio-chat delivered every message exactly once, in order,
    # and acknowledged each one to its sender once it was stored.
    assert table[("fanout", "delivered share")][3] == "100.00%"
    assert table[("fanout", "duplicates / reordered")][3] == "0 / 0"
    assert table[("fanout", "durable acks to sender")][3] == "40"
    assert table[("scale", "sessions")][2:4] == ["6", "6"]
    assert table[("scale", "sessions lost")][3] == "0"
    # The writer's CPU is shown beside the daemon's: it must not be the bottleneck unseen.
    assert re.fullmatch(r"\d+\.\d\d", table[("persistence", "writer CPU s")][3])
    # Through the fault proxy, dropping a fifth of the datagrams each way: trio-chat still
    # delivers every message once and in order, and acknowledges every one; the seed has
    # no acknowledgements to time.
    assert table[("loss", "delivered share")][3] == "100.00%"
    assert table[("loss", "duplicates / reordered")][3] == "0 / 0"
    assert table[("loss", "says acknowledged")][2:4] == ["n/a", "100.00%"]
    assert table[("loss", "sessions lost")][3] == "0"
    for metric in ("say to ack mean ms", "say to ack p99 ms"):
        seed, trio = table[("loss", metric)][2:4]
        assert seed == "n/a"
        assert re.fullmatch(r"\d+\.\d\d", trio), (metric, trio)
    for metric in ("delivery mean ms", "delivery p99 ms", "datagrams dropped"):
        assert "n/a" not in table[("loss", metric)][2:4], metric
    assert re.fullmatch(r"\d+\.\d\d%", table[("loss", "delivered share")][2])


def test_the_storm_can_be_seen_a_tenth_of_a_second_at_a_time() -> None:
    # Long enough a stream before the storm for its last half second to be seen.
    options = [*TINY, "--quiet=1", "--only=latency", "--skip-seed", f"--baseline={SEED}"]
    result = run_script("bench.py", *options, env={"BENCH_TIMELINE": "1"})
    assert result.returncode == 0, result.stderr
    pattern = (
        r"  trio-chat storm +([+-]\d+\.\d)s: +(\d+) deliveries, "
        r"p50 +\d+\.\d\d p99 +\d+\.\d\d max +\d+\.\d\d ms"
    )
    lines = [re.fullmatch(pattern, line) for line in result.stderr.splitlines()]
    bins = [(float(match[1]), int(match[2])) for match in lines if match]
    assert bins[0][0] == -0.5 and bins == sorted(bins) and all(n > 0 for _t, n in bins)


def test_a_missing_seed_server_is_one_sentence_and_exit_status_2(tmp_path: Path) -> None:
    result = run_bench("--quick", f"--baseline={tmp_path / 'nowhere.py'}")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().endswith("give it with --baseline.")
    assert "Traceback" not in result.stderr


def test_an_unknown_workload_is_refused() -> None:
    result = run_bench("--only=fanout,teleport", f"--baseline={SEED}")
    assert result.returncode == 2
    assert "Unknown workload 'teleport'" in result.stderr


def test_the_in_process_fanout_prints_each_sides_cost_per_delivery() -> None:
    result = run_script("fanout_speed.py", "--receivers=3", "--batches=4", "--batch=2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("3 receivers, 4 batches of 2: 24 deliveries in ")
    per = ("a delivery", "an acknowledgement", "a delivery")
    for line, each in zip(lines[1:], per, strict=True):
        assert re.search(rf"\d+ us a batch +\d+\.\d\d us {each}$", line), line


def test_the_in_process_fanout_compares_copies_sent_at_once_with_copies_queued() -> None:
    result = run_script("fanout_speed.py", "--receivers=3", "--batches=4", "--queued-too")
    assert result.returncode == 0, result.stderr
    ways = [
        re.fullmatch(r"  engine, say to fan-out, (.+?) +\d+\.\d\d us a delivery", line)
        for line in result.stdout.splitlines()
    ]
    assert [match[1] for match in ways if match] == ["as it is", "queued first"]


@pytest.mark.parametrize("batches", [400, 300, 500])
def test_the_comparison_divides_each_way_by_the_deliveries_it_made(
    batches: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location(
        "fanout_speed", ROOT / "scripts" / "fanout_speed.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclasses look their module up
    try:
        spec.loader.exec_module(script)
        # Every block costs the same, whichever way it ran: both ways print the same (an
        # odd number of blocks once divided one way's time by the other's deliveries).
        monkeypatch.setattr(script, "run", lambda *_a, **_k: script.Costs(engine_fanout=1.0))
        script.compare_queued(None, None, [object()] * 10, batches, 5)
    finally:
        del sys.modules[spec.name]
    printed = dict(
        re.findall(r"fan-out, (.+?) +(\d+\.\d\d) us a delivery", capsys.readouterr().out)
    )
    assert set(printed) == {"as it is", "queued first"}
    assert printed == {"as it is": "200.00", "queued first": "200.00"}  # 1 s a 5,000


def test_the_in_process_fanout_lists_the_batches_the_clients_paused_over() -> None:
    result = run_script("fanout_speed.py", "--receivers=2", "--batches=3", "--pauses=0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[4] == "  the clients over 0 ms for one batch: 3 times"
    firsts = [re.fullmatch(r"    from message (\d+): \d+\.\d ms", line) for line in lines[5:]]
    assert [int(match[1]) for match in firsts if match] == [1, 6, 11]


def ceiling_figures(
    args: tuple[str, ...],
    header: str,
    figures: str,
    ways: tuple[str, ...] = ("committed before sending", "not synced"),
) -> list[re.Match[str]]:
    """Run `scripts/fanout_ceiling.py`: each way's line, matched against `figures` and
    the CPU each side spent (groups `server` and `receivers`)."""
    result = run_script("fanout_ceiling.py", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == header
    cpu = r"CPU s: server (?P<server>\d+\.\d\d), receivers (?P<receivers>\d+\.\d\d)"
    found = []
    for line, how in zip(lines[-len(ways) :], ways, strict=True):
        match = re.fullmatch(rf"  {how} +{figures}  {cpu}", line)
        assert match, line
        found.append(match)
    return found


def test_the_fanout_ceiling_prints_what_a_bare_durable_server_could_fan_out() -> None:
    args = ("--receivers=4", "--batch=3", "--rounds=5")
    rate = r"([\d,]+) deliveries/s  \d+\.\d{3} ms a round"
    for found in ceiling_figures(args, "4 receivers, 5 batches of 3:", rate):
        assert int(found[1].replace(",", "")) > 0


def test_the_fanout_ceiling_paced_prints_each_ways_delays() -> None:
    args = ("--receivers=3", "--rate=200", "--seconds=1")
    delays = r"p50 (\d+\.\d\d) ms  p99 (\d+\.\d\d) ms"
    for found in ceiling_figures(args, "3 receivers, 200 messages a second for 1 s:", delays):
        assert 0 < float(found[1]) <= float(found[2])


def test_the_fanout_ceiling_spends_the_costs_it_is_given_on_each_side() -> None:
    # 3 receivers, 40 rounds of one message: 120 datagrams sent, 120 taken in, each
    # followed by 2 ms of spinning on its side (0.24 s), against a few hundredths without.
    args = ("--receivers=3", "--batch=1", "--rounds=40", "--durable-only")
    rate = r"[\d,]+ deliveries/s  \d+\.\d{3} ms a round"
    header = "3 receivers, 40 batches of 1:"
    (bare,) = ceiling_figures(args, header, rate, ways=("committed before sending",))
    assert float(bare["server"]) < 0.2 and float(bare["receivers"]) < 0.2
    (costly,) = ceiling_figures(
        (*args, "--server-cost=2000", "--receiver-cost=2000"),
        header,
        rate,
        ways=("committed before sending",),
    )
    assert float(costly["server"]) >= 0.24 and float(costly["receivers"]) >= 0.24


def test_the_fanout_ceiling_refuses_a_room_of_one() -> None:
    result = run_script("fanout_ceiling.py", "--receivers=1")
    assert result.returncode == 2
    assert "at least 2 receivers" in result.stderr


def run_ab(*args: str) -> subprocess.CompletedProcess[str]:
    return run_script("bench_ab.py", *args)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_bench_ab_takes_turns_and_prints_both_sides_figures_and_medians() -> None:
    tiny = ["--only=fanout", "--receivers=3", "--messages=40", "--processes=1"]
    result = run_ab("HEAD", "--rounds=2", f"--baseline={SEED}", "--", *tiny)
    assert result.returncode == 0, result.stderr
    head = _git("rev-parse", "--short", "HEAD")
    turns = [line for line in result.stderr.splitlines() if line.startswith("round ")]
    # Each round starts with the side the last one ended with: drift hits both alike.
    expected = [(1, "HEAD"), (1, "this tree"), (2, "this tree"), (2, "HEAD")]
    assert len(turns) == len(expected)
    for line, (number, side) in zip(turns, expected, strict=True):
        assert re.fullmatch(
            rf"round {number}: {side} \({head}(, with changes not committed)?\) \.\.\.", line
        ), line
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")] for line in result.stdout.splitlines()
    ]
    header, _rule, *body = rows
    assert header == ["workload", "metric", "HEAD runs", "this tree's runs", "HEAD", "this tree"]
    table = {(row[0], row[1]): row[2:] for row in body}
    assert table[("fanout", "delivered share")] == [
        "100.00%; 100.00%",
        "100.00%; 100.00%",
        "100.00%",
        "100.00%",
    ]
    assert table[("fanout", "duplicates / reordered")] == [
        "0 / 0; 0 / 0",
        "0 / 0; 0 / 0",
        "0 / 0",
        "0 / 0",
    ]
    theirs, ours, their_median, our_median = table[("fanout", "deliveries/s")]
    for runs, middle in ((theirs, their_median), (ours, our_median)):
        first, second = (float(run.replace(",", "")) for run in runs.split("; "))
        assert float(middle.replace(",", "")) == pytest.approx((first + second) / 2, abs=0.5)
    assert "trio-chat-ab-" not in _git("worktree", "list")  # the worktree is gone


def test_bench_ab_refuses_a_commit_git_does_not_know_in_one_sentence() -> None:
    result = run_ab("no-such-commit", f"--baseline={SEED}", "--", "--only=fanout")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "Cannot check out 'no-such-commit': give a commit, branch or tag git knows."
    )


def test_bench_ab_medians_keep_each_figures_form() -> None:
    spec = importlib.util.spec_from_file_location("bench_ab", ROOT / "scripts" / "bench_ab.py")
    assert spec is not None and spec.loader is not None
    bench_ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_ab)
    assert bench_ab.median(["114,620", "98,861", "120,002"]) == "114,620"
    assert bench_ab.median(["2.4", "2.125", "2.5"]) == "2.400"
    assert bench_ab.median(["100.00%", "99.50%"]) == "99.75%"
    assert bench_ab.median(["0 / 0", "0 / 0"]) == "0 / 0"
    assert bench_ab.median(["0 / 0", "1 / 0"]) == "n/a"
    assert bench_ab.median(["2.42", ""]) == "n/a"  # a run that lacked the figure


@pytest.fixture
def tally_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The bench's `benchmarks.tally`, imported from `scripts/` for this test."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    return importlib.import_module("benchmarks.tally")


def test_a_tally_with_room_reserved_keeps_what_came_and_never_grows_for_it(
    tally_module: ModuleType,
) -> None:
    text_for = tally_module.text_for
    tally = tally_module.Tally()
    tally.add(text_for(0, 1.0), 1.5)  # before the room is made: kept
    tally.reserve(tally.count + 3)
    texts, times = tally.texts, tally.times
    for index, now in ((1, 2.5), (1, 2.6), (2, 3.5)):
        tally.add(text_for(index, float(index)), now)
    assert tally.texts is texts and len(texts) == 4 and len(times) == 4  # nothing grew
    tally.add(text_for(3, 3.0), 4.0)  # more than reserved: still kept
    assert tally.count == 5 and tally.newest() == 3
    summary = tally.summary()
    assert (summary["unique"], summary["duplicates"], summary["reordered"]) == (4, 1, 0)
    assert (summary["first_at"], summary["last_at"]) == (1.5, 4.0)


def test_a_tallys_newest_follows_what_comes_and_parses_each_count_once(
    tally_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    text_for = tally_module.text_for
    parsed: list[object] = []
    parse = tally_module.parse_text

    def counting(text: str | bytes) -> tuple[int, float] | None:
        parsed.append(text)
        result: tuple[int, float] | None = parse(text)
        return result

    monkeypatch.setattr(tally_module, "parse_text", counting)
    tally = tally_module.Tally()
    assert tally.newest() == -1
    tally.add(text_for(0, 1.0), 1.5)
    tally.add(b"a text that is not the bench's", 1.6)  # skipped back over
    assert tally.newest() == 0
    asked = len(parsed)
    assert tally.newest() == 0 and tally.newest() == 0
    assert len(parsed) == asked  # nothing new came: not parsed again
    tally.add(text_for(1, 2.0), 2.5)
    assert tally.newest() == 1


def test_the_slowest_receiver_of_a_process_holds_its_report_back(
    tally_module: ModuleType,
) -> None:
    text_for = tally_module.text_for
    tallies = [tally_module.Tally() for _ in range(3)]
    slowest = tally_module.Slowest(tallies)
    assert slowest.update() == -1
    for number in range(4):
        for index, tally in enumerate(tallies):
            assert slowest.update() == number - 1  # someone still lacks `number`
            tally.add(text_for(number, 1.0), 1.0 + index)
        assert slowest.update() == number  # everyone has it now
    tallies[1].add(text_for(4, 1.0), 2.0)
    tallies[2].add(text_for(4, 1.0), 2.0)
    tallies[2].add(text_for(5, 1.0), 2.0)
    assert slowest.update() == 3  # the first is behind
    tallies[0].add(text_for(4, 1.0), 2.0)
    tallies[0].add(text_for(5, 1.0), 2.0)
    assert slowest.update() == 4  # now the second is
    with pytest.raises(ValueError):
        tally_module.Slowest([])


def test_the_slowest_receiver_alone_is_looked_at_again(
    tally_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    text_for = tally_module.text_for
    tallies = [tally_module.Tally() for _ in range(3)]
    for tally in tallies:
        tally.add(text_for(0, 1.0), 1.0)
    slowest = tally_module.Slowest(tallies)
    assert slowest.update() == 0
    asked: list[object] = []
    newest = tally_module.Tally.newest

    def counting(tally: object) -> int:
        asked.append(tally)
        result: int = newest(tally)
        return result

    monkeypatch.setattr(tally_module.Tally, "newest", counting)
    held_back = tallies[0]  # of equals, the first is taken for the slowest
    for tally in tallies:
        if tally is not held_back:
            tally.add(text_for(1, 1.0), 2.0)
            assert slowest.update() == 0
    assert asked == []  # the others getting theirs is not looked at
    held_back.add(text_for(1, 1.0), 2.0)
    assert slowest.update() == 1
    assert len(asked) >= len(tallies)  # then every one is
