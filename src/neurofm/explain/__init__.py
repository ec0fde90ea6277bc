"""Explanations of neurofm's models: 3D CAMs and gradient maps, ROAD, MetaCAM, CAManim."""
