import io
from contextlib import redirect_stderr

from rich.console import Console
from rich.progress import Progress as RichProgress

from ipvgkit.cli.ui import BarProgress
from ipvgkit.progress import Progress, Recorder, ensure


def test_base_progress_is_silent_but_logs_to_stderr():
    p = ensure(None)
    buf = io.StringIO()
    with redirect_stderr(buf):
        p.phase("x", 3)
        p.advance()
        p.status("busy")
        p.log("one line")
    assert buf.getvalue() == "one line\n"


def test_recorder_keeps_events_in_order():
    r = Recorder()
    assert ensure(r) is r
    r.phase("probe", 2)
    r.advance()
    r.advance(1)
    r.log("skipped a.mp4")
    assert r.events[0] == ("phase", "probe", 2)
    assert r.count("advance") == 2 and r.count("log") == 1


def test_bar_progress_one_task_per_phase_and_totals_update():
    console = Console(file=io.StringIO(), force_terminal=False, width=80)
    with RichProgress(console=console) as bar:
        sink = BarProgress(bar)
        assert isinstance(sink, Progress)
        sink.phase("probing", None)
        sink.phase("probing", 4)
        sink.advance(3)
        sink.phase("writing zip", 2)
        sink.advance()
        sink.log("[not markup]")
        tasks = {t.description: t for t in bar.tasks}
    assert tasks["probing"].total == 4 and tasks["probing"].completed == 3
    assert tasks["writing zip"].completed == 1
    assert "[not markup]" in console.file.getvalue()
