"""What is read from a face: the feature blocks (HOG, LBP, landmark geometry), dlib's face network and VGG16."""
