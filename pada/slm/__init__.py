"""The small language model: LoRA fine-tuning, batched generation, evaluation.

    from pada.slm.config import LoRAConfig
    from pada.slm.train import finetune                      # -> TrainResult (adapter dir + training_summary.json)
    from pada.slm.generate import load_for_inference, generate
    from pada.slm.backends import open_backend, HFBackend, VLLMBackend  # slm.backend: hf | vllm
    from pada.slm.evaluate import evaluate, write_predictions  # evaluate(task, examples, backend, split) -> EvalResult

Model names go through `pada.bundled.resolve_model` (default `smollm2-135m`).
Heavy libraries are imported inside the functions, so importing these modules is cheap.
"""
