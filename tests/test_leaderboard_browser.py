"""The leaderboard page in a real headless browser (Debian's ``chromium``; CI: ``apt-get install chromium``).

Chromium loads the page from ``file://``, runs its script (sorting by a column named in the URL), and
dumps the DOM; the test checks that the tables are sortable, the rows sorted, the plots drawn and the
audio embedded. A screenshot must be a real picture (not blank).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import slmtok
from slmtok.audio import write_audio
from slmtok.corpora import asterisk_prompts
from slmtok.leaderboard.corpus import load_corpus
from slmtok.leaderboard.runner import Bench, parse_specs
from slmtok.leaderboard.scoring import ScoreSettings
from slmtok.leaderboard.site import write_site

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A leaderboard of three tokenizers on one real prompt (STOI and SI-SDR only: fast)."""
    root = tmp_path_factory.mktemp("browser")
    (root / "corpus").mkdir()
    for path in asterisk_prompts("fr"):
        wav, rate = slmtok.read_audio(path)
        if wav.shape[-1] >= 2 * rate:
            write_audio(root / "corpus" / "prompt.wav", wav[:, : 2 * rate], rate)
            break
    items = load_corpus([f"real={root / 'corpus'}"])
    specs = parse_specs(
        ["mulaw-8bit", "mfcc-km", "mel-rvq:n_codebooks=2,decoder=griffin-lim,griffin_lim_iters=8"],
        slmtok.list_tokenizers(),
    )
    Bench(items, root / "results", ScoreSettings(groups=("stoi", "si_sdr")), examples=1).run(specs)
    write_site(root / "results", root / "site", title="browser test")
    return root


def _chromium(profile, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_page_renders_sorts_and_embeds_audio(site, tmp_path):
    url = (site / "site" / "index.html").as_uri() + "#sort=stoi:desc"
    dom = _chromium(tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", url).stdout
    assert 'data-sortable="ready"' in dom  # the script ran over the table
    circles = int(re.search(r'<body[^>]*data-ready="(\d+)"', dom).group(1))
    assert circles >= 6  # 2 plots or more, 3 tokenizers each
    assert dom.count("<svg") >= 2
    body = dom.split("<tbody>")[1].split("</tbody>")[0]
    order = re.findall(r"<tr[^>]*><td>([^<]+)</td>", body)
    assert order[:3] == [
        "mulaw-8bit",
        "mel-rvq:n_codebooks=2,decoder=griffin-lim,griffin_lim_iters=8",
        "mfcc-km",
    ], order  # STOI, best first
    assert order[-1] == "original"  # no STOI: sorted last
    assert 'class="sorted-desc"' in dom and 'data-key="stoi"' in dom
    assert dom.count('src="data:audio/ogg;base64,') == 4


def test_screenshot_is_a_real_picture(site, tmp_path):
    from PIL import Image

    shot = tmp_path / "page.png"
    url = (site / "site" / "index.html").as_uri()
    _chromium(tmp_path / "profile", "--window-size=1280,1400", f"--screenshot={shot}", url)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, table shading, coloured points
    family_colours = {(217, 95, 2), (231, 41, 138), (27, 158, 119)}  # acoustic, baseline, semantic
    assert family_colours <= {c for _, c in colours}


@pytest.mark.parametrize("width", [800, 2400])
def test_page_fits_the_window(site, tmp_path, width):
    """The page follows the window: on a wide screen the body uses it (no fixed 1400 px column), on a
    narrow one nothing sticks out of it (wide tables scroll inside their own box). Measured by chromium's
    layout at ``--window-size``."""
    page = (site / "site" / "index.html").read_text(encoding="utf-8")
    probe = (
        "<script>document.body.setAttribute('data-layout', [Math.round(document.body.getBoundingClientRect()"
        ".width), document.documentElement.scrollWidth, window.innerWidth].join(','));</script></body>"
    )
    copy = tmp_path / "index.html"
    copy.write_text(page.replace("</body>", probe), encoding="utf-8")
    dom = _chromium(
        tmp_path / "profile",
        f"--window-size={width},900",
        "--virtual-time-budget=3000",
        "--dump-dom",
        copy.as_uri(),
    ).stdout
    body, scroll, inner = map(int, re.search(r'data-layout="(\d+),(\d+),(\d+)"', dom).group(1, 2, 3))
    assert inner == width
    assert scroll <= inner  # no horizontal scrolling of the page itself
    assert body >= inner - 2 * 16 - 2 * 24 - 2  # the body spans the window less its padding and margins


@pytest.fixture(scope="module")
def slm_site(site, tmp_path_factory):
    """The SLM suite (no LM) on a hand-written probe folder for two of the bench's tokenizers and
    random-codes, merged with the bench above into one page."""
    from slmtok.probes.suite import Suite, SuiteSettings

    from .probe_fixture import write_probe_folder

    root = tmp_path_factory.mktemp("slm-browser")
    probes = write_probe_folder(root / "probes")
    specs = parse_specs(["mulaw-8bit", "mfcc-km", "random-codes"], slmtok.list_tokenizers())
    Suite(probes, root / "slm", SuiteSettings(skip_lm=True, abx_max_triplets=100)).run(specs)
    write_site([site / "results", root / "slm"], root / "site", title="merged")
    return root


def test_slm_profile_for_every_tokenizer_and_sorting(slm_site, tmp_path):
    import json

    url = (slm_site / "site" / "index.html").as_uri() + "#sort=pnmi:desc"
    dom = _chromium(tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", url).stdout
    summary = json.loads((slm_site / "slm" / "results.json").read_text())
    tokenizers = [a["tokenizer"] for a in summary["aggregates"]]
    assert tokenizers == ["mulaw-8bit", "mfcc-km", "random-codes", "text-ceiling"]
    assert re.search(r'<body[^>]*data-profile="(\d+)"', dom).group(1) == str(len(tokenizers))
    for key in tokenizers:  # every tokenizer's profile has its bars
        group = re.search(rf'<g class="tok" data-tokenizer="{re.escape(key)}">(.*?)</g>', dom).group(1)
        assert group.count('class="bar"') >= 3, key
    table = dom.split('id="table-slm"')[1].split("</table>")[0]
    order = re.findall(r"<tr[^>]*><td>([^<]+)</td>", table.split("<tbody>")[1])
    pnmi = {a["tokenizer"]: a["metrics"]["pnmi"]["value"] for a in summary["aggregates"]}
    assert order == sorted(tokenizers, key=lambda k: -pnmi[k]), order  # sorted by the script, best first
    assert order[0] == "text-ceiling"
    assert 'class="sorted-desc"' in table
