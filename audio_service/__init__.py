"""Audio service: ffmpeg decoding to 16 kHz mono PCM, speech detection, utterance cutting."""
