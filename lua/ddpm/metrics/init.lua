-- metrics/init.lua: ddpm.metrics, scores of generated sprites (docs/experiments.md):
--   SpriteClassifier, load_classifier(dir), save_classifier(clf, dir, extra), stratified_split
--   predict(clf, images) -> logits, features        images float [N, 3, H, W] in [0, 1]
--   class_accuracy(clf, images, labels)             does the label steer the sample?
--   diversity(images, labels, {classifier=})        mean pairwise distance per class (pixels, features)
--   gaussian_stats, frechet_distance, frechet_from_features, reference(clf, real, labels)
--   evaluate(clf, images, labels, reference)        all of the above for one set of samples
--   generate(pipe, {per_class=, guidance_scale=, seed=})  the samples scored, class by class
--   plot: line charts drawn with tensor ops (the experiment's figure)
--   linalg: eigh (Jacobi), sqrtm_psd, sqrtm_newton_schulz, trace_sqrt_product
local classifier = require 'ddpm.metrics.classifier'
local scores = require 'ddpm.metrics.scores'

local M = {
  SpriteClassifier = classifier.SpriteClassifier,
  load_classifier = classifier.load,
  save_classifier = classifier.save,
  stratified_split = classifier.stratified_split,
  classifier = classifier,
  linalg = require 'ddpm.metrics.linalg',
  plot = require 'ddpm.metrics.plot',
}
for k, v in pairs(scores) do M[k] = v end
local gen = require 'ddpm.metrics.generate'
M.generate = gen.generate
M.grid_subset = gen.grid_subset
return M
