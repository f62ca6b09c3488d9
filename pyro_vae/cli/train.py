"""Train a Pyro VAE with SVI and leave a run directory behind.

    python scripts/svi_train.py                               # defaults: MNIST, MLP, Trace_ELBO
    python scripts/svi_train.py --config configs/papers/burda_1layer_vae_k1.yaml --epochs 5
    python scripts/svi_train.py --elbo meanfield --no-compile    # Pyro's eager step
    python scripts/svi_train.py --resume runs/<run>            # continue where it stopped
    python scripts/svi_train.py --tensorboard                  # TensorBoard logs in RUN_DIR/tensorboard
    torchrun --nproc-per-node 2 scripts/svi_train.py           # data-parallel on 2 ranks

Every flag is also a key of the YAML config; flags override the file. See docs/configuration.md. Before
anything is loaded, a setting that nothing would read is refused, and so is a model too large
for this machine's memory or an --eval-samples evaluation that would take more than a day.
"""

import argparse
import inspect
import sys

from pyro_vae.cli.exits import ArgumentParser, command, run_command
from pyro_vae.config import add_config_arguments, add_trust_argument, make_config, merge_values
from pyro_vae.core.distributed import process_group, ranks, together
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.workload import check_iwae, check_training_memory, evaluation_images, resolve_device_name
from pyro_vae.evaluation import evaluate_model
from pyro_vae.training.trainer import train


@command
def main(argv=None) -> int:
    with process_group():  # a no-op unless launched by torchrun (docs/scaling-out.md)
        return parse_and_run(argv)


def parse_and_run(argv) -> int:
    parser = ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (see configs/)")
    add_trust_argument(parser)
    add_config_arguments(parser)
    args = vars(parser.parse_args(argv))
    config_file, trusted = args.pop("config", None), args.pop("trust_import")

    def work() -> None:
        together(lambda: check_settings(args, config_file, trusted))
        train(args, config_file=config_file, trusted_imports=trusted)

    return run_command(work, interrupted="training had not started; nothing was written")


def check_settings(args: dict, config_file, trusted: list[str]) -> None:
    """Refuse, before anything is loaded, --trust-import for a new run (which reads no saved
    config, so nothing would use it), and what this machine cannot do in reason
    (:mod:`pyro_vae.core.workload`): a training step whose activations exceed its memory, an
    --eval-samples evaluation of more than a day."""
    values = merge_values(args, config_file)
    if trusted and not values.get("resume"):
        raise ConfigError("--trust-import is for reopening a run (--resume); a new run imports the "
                          "--model or --prior you name, so drop it")
    if values.get("resume"):  # the run's own settings passed these checks when it started
        samples, limit, device = values.get("eval_samples"), values.get("limit_test"), values.get("device")
    else:
        cfg = make_config(values)
        check_training_memory(cfg)
        samples, limit, device = cfg.run.eval_samples, cfg.data.limit_test, cfg.run.device
    if samples:
        batch = inspect.signature(evaluate_model).parameters["batch_size"].default  # as train's
        check_iwae(samples, evaluation_images("test", limit), batch, resolve_device_name(device),
                   processes=ranks().world_size,
                   go_ahead="evaluate after training with scripts/evaluate.py --allow-long",
                   lower="--eval-samples or --limit-test")


if __name__ == "__main__":
    sys.exit(main())
