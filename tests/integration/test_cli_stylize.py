import os
import re
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from service.cli import main


def test_stylize_writes_both_images(tmp_path, pair_files):
    content, style = pair_files
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        main, ["stylize", str(content), str(style), "-o", str(out), "--size", "64", "--iterations", "3"]
    )
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (64, 48)
    assert Image.open(tmp_path / "out.corrected.png").size == (64, 48)
    assert "ETA" in result.stderr


def test_stylize_numbers_several_outputs(tmp_path, pair_files):
    content, style = pair_files
    out = tmp_path / "v.jpg"
    result = CliRunner().invoke(
        main, ["stylize", str(content), str(style), "-o", str(out), "--size", "64", "--iterations", "2",
               "--set", "outputs=2", "--set", "color_correction=false", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("v-*")) == ["v-1.jpg", "v-2.jpg"]


def test_stylize_says_when_a_paintings_face_was_kept_out(tmp_path, pair_files):
    import skimage.data

    content, style = pair_files
    portrait = tmp_path / "portrait.png"
    Image.fromarray(skimage.data.astronaut()).resize((256, 256)).save(portrait)
    for painting, said in ((portrait, True), (style, False)):
        result = CliRunner().invoke(main, ["stylize", str(content), str(painting), "-o", str(tmp_path / "o.png"),
                                           "--size", "128", "--iterations", "2"])
        assert result.exit_code == 0, result.output
        assert ("painting 1 has a face (4% of its canvas): its relu5_1 target comes from the rest of its canvas"
                in result.stderr) == said


def test_stylize_says_when_a_photographs_colours_were_converted(tmp_path, pair_files):
    from iccprofiles import ADOBE_RGB, matrix_profile

    content, style = pair_files
    tagged = tmp_path / "camera.png"
    Image.open(content).save(tagged, icc_profile=matrix_profile(ADOBE_RGB, "Adobe RGB (1998) (test)"))
    result = CliRunner().invoke(main, ["stylize", str(tagged), str(style), "-o", str(tmp_path / "o.png"),
                                       "--size", "64", "--iterations", "1"])
    assert result.exit_code == 0, result.output
    assert "photograph: colours converted to sRGB from its ICC profile 'Adobe RGB (1998) (test)'" in result.stderr
    assert "painting:" not in result.stderr


def test_user_errors_are_one_line_and_exit_1(tmp_path, pair_files):
    content, style = pair_files
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    runner = CliRunner()
    r = runner.invoke(main, ["stylize", str(bad), str(style), "-o", str(tmp_path / "o.png")])
    from nst_engine.images import REPLACE

    # One line: what is wrong, then the advice the error carries.
    assert r.exit_code == 1 and r.stderr.strip() == \
        f"nst: bad.jpg: not an image Pillow can read (is it really a picture?); {REPLACE}"
    r = runner.invoke(main, ["stylize", str(content), str(style), "-o", "o.png", "--set", "stlye_weight=3"])
    assert r.exit_code == 1 and "did you mean 'style_weight'" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(main, ["stylize", str(content), "-o", "o.png"])
    assert r.exit_code == 2


def test_running_out_of_memory_is_a_clear_answer_not_a_traceback(tmp_path):
    """Memory taken by something else mid-run (here: an address-space limit 768 MiB above what
    the loaded engine uses, and a budget claiming far more) ends with the plan and advice.
    1024 px (a plan of 3-4 GiB) fails in its first pass in about 5 s; 2048 px with 1.5 GiB spare
    took 23-27 s to reach the same answer."""
    import subprocess
    import sys

    samples = Path(__file__).resolve().parents[2] / "samples"
    script = (
        "import resource, sys, torch, nst_engine.optimize\n"
        "from service.cli import main\n"
        "size = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize:')) * 1024\n"
        "limit = size + 768 * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "sys.argv = ['nst'] + sys.argv[1:]\n"
        "main()\n"
    )
    env = {**os.environ, "NST_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("[worker]\nmemory_budget_mib = 200000\n")
    r = subprocess.run([sys.executable, "-c", script, "stylize", str(samples / "tubingen.jpg"),
                        str(samples / "starry_night.jpg"), "-o", str(tmp_path / "o.png"), "--size", "1024",
                        "--iterations", "2", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert re.search(r"^nst: ran out of memory at \d+x\d+ \(planned peak", r.stderr)
    assert "memory_budget_mib" in r.stderr and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_stylize_refuses_an_output_it_cannot_write_before_running(tmp_path, pair_files):
    """A missing or read-only folder, or a format nst does not write, is one line at once: not a
    traceback after the whole run (no progress is drawn: the run never started)."""
    content, style = pair_files
    read_only = tmp_path / "locked"
    read_only.mkdir(mode=0o555)
    cases = [(tmp_path / "missing" / "out.png", f"the folder {tmp_path / 'missing'} does not exist"),
             (tmp_path / "out.bmp", "nst writes .png .jpg .jpeg .webp .tif .tiff files, not .bmp")]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((read_only / "out.png", f"the folder {read_only} is not writable"))
    for out, said in cases:
        r = CliRunner().invoke(main, ["stylize", str(content), str(style), "-o", str(out), "--size", "64",
                                      "--iterations", "3"])
        assert r.exit_code == 1, r.output
        assert r.stderr.startswith(f"nst: -o {out}: ") and said in r.stderr and r.stderr.count("\n") == 1
        assert "Traceback" not in r.output and "ETA" not in r.stderr
        assert not out.exists()
