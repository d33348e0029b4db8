"""Trace DBs → fine-tuning datasets: selection, conversion, validation, atomic output.

* :mod:`~synth_cli.dataset.convert`: call records → OpenAI chat examples (calls and sessions mode);
* :mod:`~synth_cli.store.selection`: the SQL (session filters in one pass, streamed scans);
* :mod:`~synth_cli.dataset.build`: the `filter` pipeline and its stats;
* :mod:`~synth_cli.dataset.validate`: OpenAI chat fine-tuning validation of JSONL files;
* :mod:`~synth_cli.dataset.options`: flags and TOML config;
* :mod:`~synth_cli.dataset.writer`: atomic output files.

Nothing in this package prints; commands render what it returns.
"""
