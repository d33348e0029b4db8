#!/usr/bin/env bash
# Fine-tuning pipeline as plain CLI commands: trace an agent, filter, fine-tune, check the cost.
#
# Runs offline against a local backend (`synth-ai serve`) by default. To use a real
# OpenAI-compatible backend instead, set SYNTH_BASE_URL and SYNTH_API_KEY first, e.g.
#   SYNTH_BASE_URL=https://api.openai.com/v1 SYNTH_API_KEY=sk-... MODEL=gpt-4o-mini-2024-07-18 bash run_demo.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${WORK:-$PWD/synth-example}"
MODEL="${MODEL:-Qwen/Qwen3-4B-Instruct-2507}"
mkdir -p "$WORK"
rm -f "$WORK/traces.db" "$WORK/train.jsonl"

# 1. Run an agent and trace every LLM call into a SQLite trace DB.
python "$HERE/../tracing/agent.py" --db "$WORK/traces.db" --sessions 30 --seed 1

# 2. Look at what was recorded.
synth-ai traces --db "$WORK/traces.db"

# 3. Keep the good runs (reward >= 1) as OpenAI chat fine-tuning JSONL, settings from a config file.
synth-ai filter --db "$WORK/traces.db" --config "$HERE/../filter.toml" --output "$WORK/train.jsonl"

# 4. Without a configured backend, start the local one (a training simulator) in the background.
if [ -z "${SYNTH_BASE_URL:-}" ]; then
  PORT="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  synth-ai serve --port "$PORT" --data-dir "$WORK/backend" --step-seconds 0.02 >"$WORK/backend.log" 2>&1 &
  SERVER_PID=$!
  trap 'kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true' EXIT  # stop it, always
  export SYNTH_BASE_URL="http://127.0.0.1:$PORT" SYNTH_API_KEY="sk-synth-local-dev-key"
  # wait until it answers
  python -c 'import httpx, os, sys, time
for _ in range(100):
    try:
        if httpx.get(os.environ["SYNTH_BASE_URL"] + "/v1/health", timeout=1).status_code == 200: sys.exit(0)
    except httpx.HTTPError: pass
    time.sleep(0.1)
sys.exit("local backend did not start; see '"$WORK"'/backend.log")'
fi

# 5. Upload, start the job and follow it live until the model is ready.
synth-ai sft run "$WORK/train.jsonl" --model "$MODEL" --suffix example --interval 0.5

# 6. What did it cost? (backends without a balance API, like OpenAI, say so and we carry on.)
synth-ai balance || true
