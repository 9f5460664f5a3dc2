"""Codebook patterns: exact round trips ``[K, T]`` <-> LM steps, vocabularies, constraints, prompts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slmtok.errors import CodesError, RegistryError
from slmtok.lm.generation import prompt_steps
from slmtok.lm.patterns import BOS, EMPTY, EOS, PATTERNS, make_pattern

NAMES = ("flatten", "delay", "parallel")


@st.composite
def codes_cases(draw):
    sizes = draw(st.lists(st.integers(2, 40), min_size=1, max_size=5))
    frames = draw(st.integers(0, 25))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, s, (frames,), generator=g) for s in sizes])
    return draw(st.sampled_from(NAMES)), tuple(sizes), codes


@settings(max_examples=150, deadline=None, database=None)
@given(codes_cases())
def test_round_trip_is_exact(case):
    name, sizes, codes = case
    pattern = make_pattern(name, sizes)
    seq = pattern.encode(codes)
    t = codes.shape[1]
    assert seq.shape == (pattern.n_steps(t) + 2, pattern.n_streams)
    assert torch.equal(pattern.decode(seq), codes)
    assert (seq >= 0).all() and (seq < torch.tensor(pattern.stream_vocab_sizes)).all()
    assert int(pattern.is_code(seq).sum()) == len(sizes) * t  # every code appears once, nothing else is one
    assert torch.equal(seq[0], pattern.special_row(BOS)) and torch.equal(seq[-1], pattern.special_row(EOS))
    for step in range(pattern.n_steps(t)):  # codes sit in their step's allowed range
        for h, (low, high) in enumerate(pattern.step_ranges(step)):
            token = int(seq[1 + step, h])
            if token < pattern.code_vocab[h] or high - low == 1:
                assert low <= token < high
    for n in range(pattern.n_steps(t) + 1):  # any prefix decodes to the frames it completes
        partial = pattern.decode(seq[: 1 + n], strict=False)
        assert torch.equal(partial, codes[:, : pattern.complete_frames(n)])


@settings(max_examples=100, deadline=None, database=None)
@given(codes_cases(), st.integers(0, 25))
def test_prompt_steps_agree_with_the_whole_sequence(case, cut):
    name, sizes, codes = case
    pattern = make_pattern(name, sizes)
    cut = min(cut, codes.shape[1])
    prefix, forced = prompt_steps(pattern, codes[:, :cut])
    whole = pattern.encode(codes, eos=False)
    assert torch.equal(prefix, whole[: len(prefix)])
    # the forced values are the prompt's codes in the next steps; the free ones are codes of later frames
    following = whole[len(prefix) : len(prefix) + len(forced)]
    if cut < codes.shape[1]:
        assert torch.equal(forced[forced >= 0], following[forced >= 0])
    assert pattern.complete_frames(len(prefix) - 1 + len(forced)) == cut  # prefix + forced hold the prompt


def test_layouts_by_hand():
    codes = torch.tensor([[1, 2, 3], [4, 5, 0]])  # K=2, T=3, sizes (4, 6)
    flat = make_pattern("flatten", (4, 6))
    assert flat.stream_vocab_sizes == (13,)  # 4 + 6 codes, then EMPTY, BOS, EOS
    assert flat.encode(codes, bos=False, eos=False)[:, 0].tolist() == [1, 8, 2, 9, 3, 4]
    delay = make_pattern("delay", (4, 6))
    e0, e1 = 4 + EMPTY, 6 + EMPTY
    assert delay.encode(codes, bos=False, eos=False).tolist() == [[1, e1], [2, 4], [3, 5], [e0, 0]]
    assert make_pattern("parallel", (4, 6)).encode(codes, bos=False, eos=False).tolist() == [
        [1, 4],
        [2, 5],
        [3, 0],
    ]
    assert delay.specials(1).bos == 6 + BOS and delay.specials(1).eos == 6 + EOS


def test_one_codebook_patterns_coincide():
    codes = torch.randint(0, 50, (1, 30))
    seqs = [make_pattern(n, (50,)).encode(codes) for n in NAMES]
    assert all(torch.equal(seqs[0], s) for s in seqs[1:])


def test_malformed_sequences_are_refused():
    pattern = make_pattern("delay", (4, 6))
    seq = pattern.encode(torch.tensor([[1, 2, 3], [4, 5, 0]]))
    bad = seq.clone()
    bad[1, 1] = 2  # a code where the delay pattern has EMPTY
    with pytest.raises(CodesError, match="well-formed"):
        pattern.decode(bad)
    with pytest.raises(CodesError, match="EOS"):
        pattern.decode(seq[:-1])
    with pytest.raises(CodesError, match="out of range"):
        pattern.encode(torch.tensor([[4], [0]]))
    with pytest.raises(CodesError, match="K=2"):
        pattern.encode(torch.zeros(3, 5, dtype=torch.long))


def test_registry_of_patterns():
    assert set(NAMES) <= set(PATTERNS.names())
    with pytest.raises(RegistryError, match="unknown LM pattern"):
        make_pattern("zigzag", (4,))
