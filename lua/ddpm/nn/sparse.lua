-- nn/sparse.lua: Embedding(num_embeddings, embedding_dim): a lookup table initialised N(0, 1).
local class = require 'ddpm.class'
local Module = require 'ddpm.nn.module'
local init = require 'ddpm.nn.initializers'
local U = require 'ddpm.nn.common'
local F = require 'ddpm.nn.functional'
local raise = require('ddpm.ffi').raise

local M = {}

-- Embedding(num_embeddings, embedding_dim, padding_idx=nil, {dtype=, device=, generator=})
local Embedding = class('Embedding', Module)
function Embedding:__init(...)
  Module.__init(self)
  local a = U.args('Embedding', { 'num_embeddings', 'embedding_dim', 'padding_idx' }, {}, ...)
  self.num_embeddings = U.need_int('Embedding', 'num_embeddings', a.num_embeddings, 1)
  self.embedding_dim = U.need_int('Embedding', 'embedding_dim', a.embedding_dim, 1)
  local pi = a.padding_idx
  if pi ~= nil then
    if pi < 0 then pi = pi + self.num_embeddings end
    if pi < 0 or pi >= self.num_embeddings then
      raise(string.format('Embedding: padding_idx must be within num_embeddings (%d), got %s', self.num_embeddings,
        tostring(a.padding_idx)))
    end
  end
  self.padding_idx = pi
  self:register_parameter('weight', U.empty(a, self.num_embeddings, self.embedding_dim))
  init.normal_(self.weight, 0, 1, { generator = a.generator })
  if pi ~= nil then init.zeros_(self.weight:select(0, pi)) end
end
function Embedding:forward(idx) return F.embedding(idx, self.weight, { padding_idx = self.padding_idx }) end
function Embedding:extra_repr()
  local s = string.format('%d, %d', self.num_embeddings, self.embedding_dim)
  if self.padding_idx ~= nil then s = s .. ', padding_idx=' .. self.padding_idx end
  return s
end
M.Embedding = Embedding

return M
