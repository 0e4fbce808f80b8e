"""The photo's way in: decoding, finding and cropping the face, judging the light."""
