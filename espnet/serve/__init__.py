"""The transcription web service: ``python -m espnet.serve --model M [--host 127.0.0.1] [--port 8000]``.

An OpenAI-style ``POST /v1/audio/transcriptions`` (:mod:`.app`) over the pipeline of
``transcribe.py`` (:class:`espnet.asr.transcription.pipeline.Transcriber`), a model loaded once,
uploads streamed into a per-request temporary folder with a size limit (:mod:`.upload`),
requests decoded one at a time by a single worker behind a bounded queue (:mod:`.worker`),
OpenAI-style JSON errors (:mod:`.errors`) and a self-contained page at ``GET /``
(``page.html``). The command line: :mod:`.cli`."""
