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


def test_user_errors_are_one_line_and_exit_1(tmp_path, pair_files):
    content, style = pair_files
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    runner = CliRunner()
    r = runner.invoke(main, ["stylize", str(bad), str(style), "-o", str(tmp_path / "o.png")])
    assert r.exit_code == 1 and r.stderr.strip() == "nst: bad.jpg: not an image Pillow can read (is it really a picture?)"
    r = runner.invoke(main, ["stylize", str(content), str(style), "-o", "o.png", "--set", "stlye_weight=3"])
    assert r.exit_code == 1 and "did you mean 'style_weight'" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(main, ["stylize", str(content), "-o", "o.png"])
    assert r.exit_code == 2
