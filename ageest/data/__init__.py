"""The data: FG-NET's files, landmarks, checksums, the synthetic set, splits, alignment, face detection."""
