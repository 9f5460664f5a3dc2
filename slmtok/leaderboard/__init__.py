"""The tokenizer leaderboard: ``slmtok bench`` (evaluate tokenizers on a corpus) and ``slmtok leaderboard``
(render results as Markdown and a self-contained HTML page).

- ``corpus``: the evaluation files (folders, manifests with transcripts, named subsets);
- ``runner``: encode, decode and time every file with every tokenizer, resumably;
- ``scoring``: every metric of one resynthesis against its original, optional back-ends included;
- ``results`` / ``stats``: the versioned results files, aggregates with bootstrap confidence intervals;
- ``markdown`` / ``site`` / ``plots``: the rendered leaderboard (tables, Pareto plots as inline SVG).
"""
