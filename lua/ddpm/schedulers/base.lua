-- schedulers/base.lua: what every noise scheduler shares (≈ diffusers' SchedulerMixin +
-- ConfigMixin + the helpers its schedulers copy from each other): config keys with defaults and
-- checks, from_config / save_config (scheduler_config.json), beta schedules, float32 scalar
-- arithmetic, numpy-exact timestep spacing, add_noise / get_velocity, x0 clipping and dynamic
-- thresholding.
--
-- Parity: diffusers computes the per-step coefficients on 0-d float32 tensors, so every scalar
-- operation rounds to float32.  Here they are Lua numbers passed through f32() after each
-- operation (float32 + - * / sqrt of float32 inputs, computed in double and rounded once, are
-- exactly IEEE float32), and the tensor work is done by the engine's float32 kernels.
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local T = require 'ddpm.tensor'
local raise = F.raise
local is_tensor = T.is_tensor

local M = {}

M.DIFFUSERS_VERSION = '0.27.2'
M.CONFIG_NAME = 'scheduler_config.json'

local function ddpm() return require 'ddpm' end

-- ---- float32 scalars ---------------------------------------------------------------------------------
local fbuf = ffi.new('float[1]')
local function f32(x)
  fbuf[0] = x
  return fbuf[0]
end
M.f32 = f32
function M.sqrt32(x) return f32(math.sqrt(x)) end

-- fma(a, b, c) rounded once to float32, for float32 a, b, c with a*b exact in double (b a small
-- integer here).  a*b + c is rounded to double first; that can only differ from a single rounding
-- when it lands exactly on a midpoint between two floats, which TwoSum's error term settles.
local function fma32(a, b, c)
  local p = a * b
  local s = p + c
  local bb = s - p
  local err = (p - (s - bb)) + (c - bb)
  local f = f32(s)
  if err ~= 0 and f ~= s then
    local other = 2 * s - f
    if f32(other) == other and (other + f) / 2 == s then
      if (err > 0) == (other > f) then f = other end
    end
  end
  return f
end
M.fma32 = fma32

-- torch.linspace(start, end, n, dtype=float32) exactly as PyTorch 1.13's AVX2 CPU kernel fills it
-- (the reference fixtures were made there): vectors of 8 from a base start + step*idx (a
-- contracted fma; from the end backwards past the halfway point), lanes base + k*step, two vectors
-- per loop trip, and the remainder one by one.  A one-off O(n) loop when a scheduler is built.
function M.torch_linspace32(start, stop, n)
  local d = require 'ddpm'
  if n == 1 then return d.tensor({ f32(start) }) end
  start, stop = f32(start), f32(stop)
  local step = f32((stop - start) / (n - 1))
  local half = math.floor(n / 2)
  local V = 8
  local vec_end = n - n % (2 * V)
  local r = {}
  for i = 0, n - 1 do
    local base_at = i < vec_end and i - i % V or i
    local base
    if base_at < half then base = fma32(step, base_at, start) else base = fma32(-step, n - base_at - 1, stop) end
    local k = i - base_at
    r[i + 1] = k == 0 and base or f32(base + f32(k * step))
  end
  return d.tensor(r)
end

-- numpy's round(): half to even
local function rint(x)
  local r = math.floor(x)
  local d = x - r
  if d > 0.5 or (d == 0.5 and r % 2 == 1) then r = r + 1 end
  return r
end
M.rint = rint

-- np.linspace(start, stop, num) in float64: i*step + start, the last value exactly stop
function M.np_linspace(start, stop, num)
  local r = {}
  if num <= 0 then return r end
  local div = num - 1
  local delta = stop - start
  if div > 0 then
    local step = delta / div
    for i = 0, num - 1 do
      if step == 0 then r[i + 1] = (i / div) * delta + start else r[i + 1] = i * step + start end
    end
    r[num] = stop
  else
    r[1] = start
  end
  return r
end

-- np.arange(start, stop, step) for floats: length ceil((stop-start)/step), values start + i*delta
-- with delta = (start + step) - start, as numpy fills them
function M.np_arange(start, stop, step)
  local n = math.ceil((stop - start) / step)
  local r = {}
  if n <= 0 then return r end
  r[1] = start
  local delta = (start + step) - start
  for i = 1, n - 1 do r[i + 1] = start + i * delta end
  return r
end

-- ---- config ---------------------------------------------------------------------------------------------
-- A config spec is an ordered list of {key, default, kind[, choices]}; kind: 'int', 'float',
-- 'bool', 'str', 'list' (a list of numbers or nil), 'any'.
local function fmt_choices(c) return "'" .. table.concat(c, "', '") .. "'" end

local function check_value(clsname, key, v, kind, choices)
  if v == nil then
    if kind == 'list' or kind == 'any' or kind == 'optstr' then return end
    raise(string.format('%s: config %s must not be nil', clsname, key))
  end
  local ok
  if kind == 'int' then ok = type(v) == 'number' and v == math.floor(v)
  elseif kind == 'float' then ok = type(v) == 'number'
  elseif kind == 'bool' then ok = type(v) == 'boolean'
  elseif kind == 'str' or kind == 'optstr' then ok = type(v) == 'string'
  elseif kind == 'list' then ok = type(v) == 'table' or is_tensor(v)
  else ok = true end
  if not ok then
    local want = ({ int = 'an integer', float = 'a number', bool = 'a boolean', str = 'a string', optstr = 'a string',
      list = 'a list of numbers' })[kind]
    raise(string.format('%s: config %s must be %s, got %s', clsname, key, want, tostring(v)))
  end
  if choices then
    for _, c in ipairs(choices) do if c == v then return end end
    raise(string.format("%s: unknown %s '%s'; expected one of %s", clsname, key, tostring(v), fmt_choices(choices)))
  end
end

-- Build a config from the spec and a user table.  strict: unknown keys are errors (a typo in a
-- constructor call); from_config passes strict=false, as diffusers ignores other schedulers' keys.
function M.make_config(cls, user, strict)
  local spec = cls.config_spec
  local known = {}
  for _, e in ipairs(spec) do known[e[1]] = e end
  if user ~= nil and type(user) ~= 'table' then
    raise(string.format('%s: expected a config table such as {num_train_timesteps=1000}, got %s', cls.name, type(user)))
  end
  user = user or {}
  if strict then
    for k in pairs(user) do
      if type(k) ~= 'string' or (not known[k] and k:sub(1, 1) ~= '_') then
        local names = {}
        for _, e in ipairs(spec) do names[#names + 1] = e[1] end
        raise(string.format("%s: unknown config key '%s'; expected some of: %s", cls.name, tostring(k),
          table.concat(names, ', ')))
      end
    end
  end
  local cfg = {}
  for _, e in ipairs(spec) do
    local key, default, kind, choices = e[1], e[2], e[3], e[4]
    local v = user[key]
    if v == nil or v == M.json_null() then v = default end
    if type(v) == 'table' and not is_tensor(v) then
      local c = {}
      for i, x in ipairs(v) do c[i] = x end
      v = c
    end
    check_value(cls.name, key, v, kind, choices)
    cfg[key] = v
  end
  return cfg
end

local cjson_ok, cjson = pcall(require, 'cjson')
function M.json_null() return cjson_ok and cjson.null or nil end

-- ---- JSON in diffusers' layout (json.dumps(indent=2, sort_keys=True)) --------------------------------
local function json_number(v, kind)
  if v ~= v then return 'NaN' end
  if v == math.huge then return 'Infinity' end
  if v == -math.huge then return '-Infinity' end
  if kind == 'int' and v == math.floor(v) then return string.format('%d', v) end
  -- Python's float repr: the shortest digits that read back to the same double; scientific
  -- notation below 1e-4 and from 1e16; integral values get a '.0'
  local s
  for p = 1, 17 do
    s = string.format('%.' .. p .. 'g', v)
    if tonumber(s) == v then break end
  end
  local e = tonumber(s:match('e([-+]%d+)$') or '0')
  if s:find('e') and e >= -4 and e < 16 then
    for p = 0, 20 do
      local t = string.format('%.' .. p .. 'f', v)
      if tonumber(t) == v then
        s = t
        break
      end
    end
  end
  if not s:find('[%.e]') then s = s .. '.0' end
  return s
end
M.json_number = json_number

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local map = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\t'] = '\\t', ['\r'] = '\\r' }
    return map[c] or string.format('\\u%04x', c:byte())
  end) .. '"'
end

local function json_value(v, kind, indent)
  if v == nil or v == M.json_null() then return 'null' end
  local t = type(v)
  if t == 'boolean' then return tostring(v) end
  if t == 'number' then return json_number(v, kind) end
  if t == 'string' then return json_string(v) end
  if is_tensor(v) then v = v:double():contiguous():view(-1):totable_flat() end
  if type(v) == 'table' then
    if #v == 0 then return '[]' end
    local pad = string.rep(' ', indent + 2)
    local parts = {}
    for i, x in ipairs(v) do parts[i] = pad .. json_value(x, 'float', indent + 2) end
    return '[\n' .. table.concat(parts, ',\n') .. '\n' .. string.rep(' ', indent) .. ']'
  end
  raise('save_config: cannot write a ' .. t .. ' to JSON')
end

-- the config as scheduler_config.json text
function M.config_json(cls, cfg)
  local kinds = {}
  for _, e in ipairs(cls.config_spec) do kinds[e[1]] = e[3] end
  local keys = {}
  for _, e in ipairs(cls.config_spec) do keys[#keys + 1] = e[1] end
  keys[#keys + 1] = '_class_name'
  keys[#keys + 1] = '_diffusers_version'
  table.sort(keys)
  local lines = {}
  for _, k in ipairs(keys) do
    local v
    if k == '_class_name' then v = cls.name
    elseif k == '_diffusers_version' then v = M.DIFFUSERS_VERSION
    else v = cfg[k] end
    lines[#lines + 1] = '  ' .. json_string(k) .. ': ' .. json_value(v, kinds[k], 2)
  end
  return '{\n' .. table.concat(lines, ',\n') .. '\n}\n'
end

local function read_file(path)
  local f, err = io.open(path, 'rb')
  if not f then return nil, err end
  local s = f:read('*a')
  f:close()
  return s
end

local function is_dir(path)
  local f = io.open(path .. '/.', 'rb')
  if f then f:close() end
  return f ~= nil
end

-- Find and parse a scheduler config: a .json file, a directory holding scheduler_config.json, or
-- a pipeline directory holding scheduler/scheduler_config.json.
function M.read_config(path, subfolder)
  if not cjson_ok then raise('scheduler config: lua-cjson is not installed (apt-get install lua-cjson)') end
  local candidates = {}
  if subfolder then
    candidates[1] = path .. '/' .. subfolder .. '/' .. M.CONFIG_NAME
  elseif path:match('%.json$') then
    candidates[1] = path
  else
    candidates = { path .. '/' .. M.CONFIG_NAME, path .. '/scheduler/' .. M.CONFIG_NAME }
  end
  for _, p in ipairs(candidates) do
    local text = read_file(p)
    if text then
      local ok, cfg = pcall(cjson.decode, text)
      if not ok or type(cfg) ~= 'table' then
        raise(string.format('scheduler config %s is not valid JSON: %s', p, tostring(cfg)))
      end
      return cfg, p
    end
  end
  raise(string.format("no scheduler config at '%s' (looked for %s)", path, table.concat(candidates, ', ')))
end

function M.write_config(dir, text)
  if type(dir) ~= 'string' or dir == '' then raise('save_config: expected a directory path, got ' .. tostring(dir)) end
  if not is_dir(dir) then
    local ok = os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
    if ok ~= 0 and ok ~= true then raise('save_config: cannot create directory ' .. dir) end
  end
  local path = dir .. '/' .. M.CONFIG_NAME
  local f, err = io.open(path, 'wb')
  if not f then raise('save_config: cannot write ' .. path .. ': ' .. tostring(err)) end
  f:write(text)
  f:close()
  return path
end

-- ---- beta schedules --------------------------------------------------------------------------------------
-- betas_for_alpha_bar (Glide's cosine schedule) in float64, then float32 as torch.tensor() rounds
local function betas_for_alpha_bar(n, max_beta)
  max_beta = max_beta or 0.999
  local function abar(t) return math.cos((t + 0.008) / 1.008 * math.pi / 2) ^ 2 end
  local b = {}
  for i = 0, n - 1 do
    local t1, t2 = i / n, (i + 1) / n
    b[i + 1] = math.min(1 - abar(t2) / abar(t1), max_beta)
  end
  return ddpm().tensor(b)
end
M.betas_for_alpha_bar = betas_for_alpha_bar

-- torch.cumprod on float32 CPU tensors accumulates in double and rounds each output to float32.
-- (A one-off O(T) loop when a scheduler is built; there is no cumprod op in the engine yet.)
local function cumprod32(t)
  local v = t:double():contiguous():totable_flat()
  local acc, out = 1.0, {}
  for i = 1, #v do
    acc = acc * v[i]
    out[i] = f32(acc)
  end
  return ddpm().tensor(out), out
end
M.cumprod32 = cumprod32

-- rescale_zero_terminal_snr (arXiv:2305.08891, Algorithm 1), on float32 tensors as diffusers
function M.rescale_zero_terminal_snr(betas)
  local alphas = 1 - betas
  local acp = cumprod32(alphas)
  local abs = acp:sqrt()
  local n = abs:size(0)
  local a0, aT = abs:select(0, 0):item(), abs:select(0, n - 1):item()
  abs = abs - aT
  abs = abs * f32(a0 / f32(a0 - aT))
  local abar = abs * abs
  local ratio = abar:narrow(0, 1, n - 1) / abar:narrow(0, 0, n - 1)
  local al = ddpm().cat({ abar:narrow(0, 0, 1), ratio }, 0)
  return 1 - al
end

-- betas for a config (beta_schedule, trained_betas, rescale_betas_zero_snr) as float32
function M.make_betas(cls, cfg)
  local d = ddpm()
  local n = cfg.num_train_timesteps
  if n < 1 then raise(string.format('%s: num_train_timesteps must be at least 1, got %d', cls.name, n)) end
  local betas
  if cfg.trained_betas ~= nil then
    local tb = cfg.trained_betas
    betas = is_tensor(tb) and tb:detach():float():contiguous():view(-1) or d.tensor(tb)
    if betas:numel() ~= n then
      raise(string.format('%s: trained_betas has %d values but num_train_timesteps is %d', cls.name, betas:numel(), n))
    end
  elseif cfg.beta_schedule == 'linear' then
    betas = M.torch_linspace32(cfg.beta_start, cfg.beta_end, n)
  elseif cfg.beta_schedule == 'scaled_linear' then
    -- latent-diffusion's schedule: linear in sqrt(beta)
    betas = M.torch_linspace32(cfg.beta_start ^ 0.5, cfg.beta_end ^ 0.5, n) ^ 2
  elseif cfg.beta_schedule == 'squaredcos_cap_v2' then
    betas = betas_for_alpha_bar(n)
  elseif cfg.beta_schedule == 'sigmoid' then
    -- GeoDiff's sigmoid schedule
    betas = M.torch_linspace32(-6, 6, n):sigmoid() * (cfg.beta_end - cfg.beta_start) + cfg.beta_start
  else
    raise(string.format("%s: unknown beta_schedule '%s'", cls.name, tostring(cfg.beta_schedule)))
  end
  if cfg.rescale_betas_zero_snr then betas = M.rescale_zero_terminal_snr(betas) end
  return betas
end

-- ---- timesteps ---------------------------------------------------------------------------------------------
-- The inference timesteps for n steps (descending), by timestep_spacing, as a Lua list of
-- integers (DDPM/DDIM semantics).
function M.spaced_timesteps(cfg, n)
  local T = cfg.num_train_timesteps
  local r = {}
  if cfg.timestep_spacing == 'linspace' then
    local ls = M.np_linspace(0, T - 1, n)
    for i = 1, n do r[i] = rint(ls[n + 1 - i]) end
  elseif cfg.timestep_spacing == 'leading' then
    local ratio = math.floor(T / n)
    for i = 1, n do r[i] = (n - i) * ratio + cfg.steps_offset end
  elseif cfg.timestep_spacing == 'trailing' then
    local ar = M.np_arange(T, 0, -(T / n))
    for i = 1, #ar do r[i] = rint(ar[i]) - 1 end
  else
    raise(string.format("unknown timestep_spacing '%s'; expected one of 'linspace', 'leading', 'trailing'",
      tostring(cfg.timestep_spacing)))
  end
  M.check_timesteps_range(cfg, r)
  return r
end

function M.check_timesteps_range(cfg, list)
  local T = cfg.num_train_timesteps
  for _, t in ipairs(list) do
    if t < 0 or t >= T then
      raise(string.format('set_timesteps: timestep %d is outside [0, %d) (timestep_spacing %s, steps_offset %d); '
        .. 'lower steps_offset or change timestep_spacing', t, T, tostring(cfg.timestep_spacing), cfg.steps_offset or 0))
    end
  end
end

-- A timestep argument (number, or a tensor of one element) as an integer Lua number.
function M.timestep_number(name, t)
  if is_tensor(t) then
    if t:numel() ~= 1 then
      raise(string.format('%s.step: timestep must be one value, got a tensor of %d elements', name, t:numel()))
    end
    t = t:item()
  end
  if type(t) ~= 'number' or t ~= t then
    raise(string.format('%s.step: timestep must be a number or a one-element tensor, got %s', name, tostring(t)))
  end
  return t
end

-- set_timesteps(n) of every scheduler: a whole number of steps, at most the training timesteps
function M.check_num_inference_steps(name, n, T)
  if type(n) ~= 'number' or n ~= math.floor(n) or n < 1 then
    raise(name .. ':set_timesteps: num_inference_steps must be a positive integer, got ' .. tostring(n))
  end
  if n > T then
    raise(string.format('%s:set_timesteps: num_inference_steps (%d) cannot be larger than '
      .. 'num_train_timesteps (%d): the model was trained on %d timesteps', name, n, T, T))
  end
end

-- step() needs set_timesteps() first
function M.check_timesteps_set(scheduler, name)
  if scheduler.num_inference_steps == nil then
    raise(name .. '.step: the number of inference steps is not set; call set_timesteps(n) before step()')
  end
end

function M.check_step_args(name, model_output, sample, allow_double_channels)
  T.need_tensor(model_output, 'model_output', name .. '.step')
  T.need_tensor(sample, 'sample', name .. '.step')
  local ms, ss = model_output:shape(), sample:shape()
  local same = #ms == #ss
  for i = 1, #ms do
    if ms[i] ~= ss[i] and not (i == 2 and allow_double_channels and ms[i] == 2 * ss[i]) then same = false end
  end
  if not same then
    raise(string.format('%s.step: model_output has shape [%s] but sample has shape [%s]; they must match%s', name,
      table.concat(ms, ', '), table.concat(ss, ', '),
      allow_double_channels and ' (or model_output may carry twice the channels with a learned variance)' or ''))
  end
end

-- ---- x0 clipping and dynamic thresholding ----------------------------------------------------------------
-- Imagen's dynamic thresholding: per sample, s = quantile(|x0|, ratio) clamped to [1, max];
-- x0 = clamp(x0, -s, s) / s.  The quantile follows torch.quantile (linear interpolation, float32
-- ranks); the per-row sort runs in Lua until the engine has a sort op (rows are small images).
function M.threshold_sample(cfg, sample)
  local d = ddpm()
  local shape = sample:shape()
  local b = shape[1]
  local dtype = sample.dtype
  local x = sample
  if dtype ~= d.float32 and dtype ~= d.float64 then x = x:float() end
  x = x:reshape(b, -1)
  local n = x:size(1)
  local q = cfg.dynamic_thresholding_ratio
  local rank = f32(f32(q) * (n - 1))
  local lo = math.floor(rank)
  local hi = math.ceil(rank)
  local w = f32(rank - lo)
  local svals = {}
  local rows = x:abs():double():contiguous()
  for i = 0, b - 1 do
    local v = rows:select(0, i):totable_flat()
    table.sort(v, function(a, c) return a < c or (c ~= c and a == a) end)
    local a, e = v[lo + 1], v[hi + 1]
    local s
    -- torch.lerp: a + w*(e-a) for w < 0.5, else e - (e-a)*(1-w)
    if w < 0.5 then s = f32(a + f32(w * f32(e - a))) else s = f32(e - f32(f32(e - a) * f32(1 - w))) end
    s = math.min(math.max(s, 1), cfg.sample_max_value)
    svals[i + 1] = { s }
  end
  local s = d.tensor(svals, { dtype = x.dtype, device = x.device })
  x = x:clamp(-s, s) / s
  return x:reshape(shape):to(dtype)
end

-- clip or threshold "predicted x_0" as the config asks
function M.clip_x0(cfg, x0)
  if cfg.thresholding then return M.threshold_sample(cfg, x0) end
  if cfg.clip_sample then return x0:clamp(-cfg.clip_sample_range, cfg.clip_sample_range) end
  return x0
end

-- ---- add_noise / get_velocity on alphas_cumprod ---------------------------------------------------------
-- alphas_cumprod moved to a device/dtype once and kept (diffusers moves it on every call)
function M.acp_on(self, like)
  local key = tostring(like.device) .. '/' .. like.dtype.name
  self._acp_cache = self._acp_cache or {}
  local t = self._acp_cache[key]
  if t == nil then
    t = self.alphas_cumprod:to(like.dtype, like.device)
    self._acp_cache[key] = t
  end
  return t
end

local function timesteps_tensor(name, timesteps, like, n_train)
  local d = ddpm()
  if type(timesteps) == 'number' then timesteps = { timesteps } end
  if type(timesteps) == 'table' and not is_tensor(timesteps) then
    timesteps = d.tensor(timesteps, { dtype = d.int64 })
  end
  T.need_tensor(timesteps, 'timesteps', name)
  if timesteps:is_floating_point() then
    raise(string.format('%s: timesteps must be an integer tensor (int64), got %s', name, tostring(timesteps.dtype)))
  end
  if timesteps.device ~= like.device then timesteps = timesteps:to(like.device) end
  return timesteps:reshape(-1)
end

-- sqrt(acp[t]) and sqrt(1 - acp[t]) shaped [B, 1, 1, ...] for a batch like `like`
function M.noise_coefficients(self, name, like, timesteps)
  local acp = M.acp_on(self, like)
  local ts = timesteps_tensor(name, timesteps, like, self.config.num_train_timesteps)
  local a = acp:index_select(0, ts)
  local shape = { a:numel() }
  for _ = 2, like:dim() do shape[#shape + 1] = 1 end
  return a:sqrt():reshape(shape), (1 - a):sqrt():reshape(shape)
end

-- add_noise(original_samples, noise, timesteps): sqrt(acp[t]) * x0 + sqrt(1 - acp[t]) * noise
function M.add_noise(self, original, noise, timesteps)
  local name = self.name .. ':add_noise'
  T.need_tensor(original, 'original_samples', name)
  T.need_tensor(noise, 'noise', name)
  local a, b = M.noise_coefficients(self, name, original, timesteps)
  return a * original + b * noise
end

-- get_velocity(sample, noise, timesteps): sqrt(acp[t]) * noise - sqrt(1 - acp[t]) * sample
function M.get_velocity(self, sample, noise, timesteps)
  local name = self.name .. ':get_velocity'
  T.need_tensor(sample, 'sample', name)
  T.need_tensor(noise, 'noise', name)
  local a, b = M.noise_coefficients(self, name, sample, timesteps)
  return a * noise - b * sample
end

-- ---- classes -------------------------------------------------------------------------------------------------
-- M.class{name=, config_spec=, init=function(self) ... end}: a scheduler class with
-- Cls(config), Cls.from_config(tbl_or_path, overrides), s:save_config(dir), s.config.
function M.class(spec)
  local cls = spec
  cls.__index = cls
  cls.__tostring = function(s)
    local keys = {}
    for _, e in ipairs(cls.config_spec) do
      local v = s.config[e[1]]
      if type(v) == 'string' then v = "'" .. v .. "'" elseif type(v) == 'table' then v = '[...]' end
      keys[#keys + 1] = e[1] .. '=' .. tostring(v)
    end
    return cls.name .. '(' .. table.concat(keys, ', ') .. ')'
  end
  function cls.new(cfg, strict)
    local self = setmetatable({}, cls)
    self.name = cls.name
    self.config = M.make_config(cls, cfg, strict ~= false)
    self.order = cls.order or 1
    self:init()
    return self
  end
  -- from_config(config_table | path, overrides): other schedulers' keys are ignored, so a
  -- DDPM config builds a DDIM scheduler (the one-line swap).
  function cls.from_config(src, overrides)
    local cfg
    if type(src) == 'string' then
      cfg = M.read_config(src, overrides and overrides.subfolder)
    elseif type(src) == 'table' then
      cfg = src.config ~= nil and type(src.config) == 'table' and src.config or src
    else
      raise(string.format('%s.from_config: expected a config table, a scheduler or a path, got %s', cls.name, type(src)))
    end
    local merged = {}
    for k, v in pairs(cfg) do merged[k] = v end
    for k, v in pairs(overrides or {}) do
      if k ~= 'subfolder' then merged[k] = v end
    end
    -- keys given explicitly as overrides are still checked strictly
    for k in pairs(overrides or {}) do
      if k ~= 'subfolder' then
        local ok = false
        for _, e in ipairs(cls.config_spec) do if e[1] == k then ok = true end end
        if not ok then raise(string.format("%s.from_config: unknown config key '%s'", cls.name, tostring(k))) end
      end
    end
    return cls.new(merged, false)
  end
  cls.from_pretrained = function(path, opts) return cls.from_config(path, opts) end
  function cls:save_config(dir) return M.write_config(dir, M.config_json(cls, self.config)) end
  cls.save_pretrained = cls.save_config
  function cls:to_json_string() return M.config_json(cls, self.config) end
  function cls:add_noise(x0, noise, t) return M.add_noise(self, x0, noise, t) end
  function cls:get_velocity(x, noise, t) return M.get_velocity(self, x, noise, t) end
  -- the inference timesteps as a Lua list of numbers (for loops in scripts)
  function cls:timestep_list()
    if self._tlist == nil then self._tlist = self.timesteps:double():totable_flat() end
    return self._tlist
  end
  function cls:len() return self.config.num_train_timesteps end
  return setmetatable(cls, { __call = function(c, cfg) return c.new(cfg, true) end })
end

-- common config entries
M.PREDICTION_TYPES = { 'epsilon', 'sample', 'v_prediction' }
M.SPACINGS = { 'linspace', 'leading', 'trailing' }

return M
