"""The networks (`backbones`, `model`, `faceage`) and the losses (`losses`)."""
