/**
 * The vLLM release the node image pins (deploy/docker/node.Dockerfile `VLLM_IMAGE`, README "Running against real vLLM
 * and GPUs"; test/unit/docker.test.ts keeps the three equal). It must know every request parameter the gateway
 * forwards (protocols/messages.ts engineParams) and every flag the instance manager passes to `vllm serve`
 * (src/engine/index.ts):
 * - `--stream-interval` (engine.streamInterval > 1): vLLM PR #27869, merged 2025-10-31, first released in v0.11.1;
 * - `cache_salt` (v0.9), `vllm_xargs`, `reasoning_effort`, `structural_tag`, `--long-prefill-token-threshold`,
 *   `--enable-sleep-mode`, `--no-enable-prefix-caching`: all in releases before v0.11;
 * - the top-level `guided_json` / `guided_regex` / `guided_choice` / `guided_grammar` / `guided_decoding_backend` /
 *   `guided_whitespace_pattern` request fields: removed in v0.12.0 (replaced by `structured_outputs`), which accepts
 *   unknown fields and ignores them, so a later release would serve guided requests unconstrained.
 * v0.11.2 is the last release of that window.
 */
export const VLLM_VERSION = 'v0.11.2';

/** The official vLLM OpenAI-server image of VLLM_VERSION. */
export const VLLM_IMAGE = `vllm/vllm-openai:${VLLM_VERSION}`;
