"""What every trainer's checkpoints promise, checked the same way for each."""
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
import torch


def check_a_stopped_run_resumes(main, run: list[str], folder: Path) -> tuple[Path, Path]:
    """
    Train `run` whole, and stopped after step 3 then resumed: the same weights.

    `main` is the trainer's entry point, `run` its arguments without --out (a short
    run of more than 3 steps, a checkpoint every 2). Also checked: a finished run
    leaves no checkpoint, a resume may not change what is trained, and there is
    nothing to resume once the run is done. Returns the two output folders.
    """
    whole, split = folder / 'whole', folder / 'split'
    main(run + ['--out', str(whole)])
    assert not (whole / 'checkpoint').exists()  # a finished run leaves the model
    main(run + ['--out', str(split), '--until-step', '3'])
    assert not (split / 'model.safetensors').exists()
    assert json.loads((split / 'checkpoint' / 'trainer.json').read_text())['step'] == 3
    with pytest.raises(SystemExit):  # what is trained cannot change on the way
        main(run + ['--out', str(split), '--resume', '--lr', '1e-2'])
    main(run + ['--out', str(split), '--resume'])
    expected, got = load_file(whole / 'model.safetensors'), load_file(split / 'model.safetensors')
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    with pytest.raises(SystemExit):  # nothing left to resume
        main(run + ['--out', str(split), '--resume'])
    return whole, split
