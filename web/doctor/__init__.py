"""The doctor's side: the photo page, the API's prediction, feedback on results, places for photos and maps."""
