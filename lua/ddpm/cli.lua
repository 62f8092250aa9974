-- cli.lua: command-line options for scripts, in the style of Python's argparse:
--
--   local args = ddpm.cli.parse(arg, {
--     description = 'Train the conditional sprite model.',
--     options = {
--       { '--epochs', type = 'integer', default = 32, help = 'passes over the data' },
--       { '--lr', type = 'number', default = 1e-4, help = 'Adam learning rate' },
--       { '-b', '--batch-size', type = 'integer', default = 128, min = 1 },
--       { '--device', choices = { 'cpu', 'cuda' }, default = 'cpu' },
--       { '--betas', type = 'numbers', default = { 0.9, 0.999 } },
--       { '--ema', type = 'boolean', help = 'keep an EMA copy' },      -- a flag; --no-ema too
--       { 'checkpoint', required = false, help = 'a positional argument' },
--     } })
--   args.epochs, args.batch_size, args.ema ...
--
-- Types: string (the default), number, integer, boolean (a flag), numbers, integers, strings
-- (lists: `--betas 0.9 0.999` or `--betas 0.9,0.999`).  Keys: `required`, `default`, `choices`,
-- `min`, `max`, `help`, `metavar`, `dest`.  Names without a dash are positional (required unless
-- they have a default or required = false).
--
-- A usage error (unknown option, missing value, wrong type, value not among the choices or out of
-- range) or --help raises an error OBJECT {exit_code = 2 or 0, message = text} before any work
-- starts; ddpm-lua prints its message without a traceback (stderr, or stdout for --help) and
-- exits with that status, and the REPL just prints it.  Code that wants to handle it itself
-- checks `ddpm.cli.is_exit(err)`.  Mistakes in the spec itself are ordinary errors.
local M = {}

-- ---- the error object ----------------------------------------------------------------------------
local Exit = {}
Exit.__index = Exit
Exit.__tostring = function(e) return e.message end
local function exit_with(code, message) error(setmetatable({ exit_code = code, message = message }, Exit), 0) end
function M.is_exit(e) return getmetatable(e) == Exit end

-- ---- types -------------------------------------------------------------------------------------------------
local function to_number(s)
  local v = tonumber(s)
  if v == nil or v ~= v then return nil end
  return v
end
local function to_integer(s)
  local v = to_number(s)
  if v == nil or v ~= math.floor(v) or v == math.huge or v == -math.huge then return nil end
  return v
end
local BOOL = { ['true'] = true, ['false'] = false, ['1'] = true, ['0'] = false, yes = true, no = false,
  on = true, off = false }

-- scalar converter, what the error calls it, and whether the option holds a list
local TYPES = {
  string = { conv = tostring, what = 'a string' },
  number = { conv = to_number, what = 'a number' },
  integer = { conv = to_integer, what = 'an integer' },
  boolean = { conv = function(s) return BOOL[s:lower()] end, what = 'true or false' },
  numbers = { conv = to_number, what = 'a number', list = true },
  integers = { conv = to_integer, what = 'an integer', list = true },
  strings = { conv = tostring, what = 'a string', list = true },
}
-- Python spellings are accepted too, so an argparse spec ports with few edits
local ALIASES = { str = 'string', float = 'number', int = 'integer', bool = 'boolean', flag = 'boolean' }

local function looks_like_option(s)
  return s:sub(1, 1) == '-' and #s > 1 and to_number(s) == nil
end

-- ---- the spec ---------------------------------------------------------------------------------------------
local raise = require('ddpm.ffi').raise
local function spec_error(msg) raise('ddpm.cli.parse: ' .. msg) end

local function fmt_value(v)
  if type(v) == 'table' then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = fmt_value(x) end
    return table.concat(parts, ' ')
  end
  if type(v) == 'number' and v == math.floor(v) and math.abs(v) < 1e15 then return string.format('%d', v) end
  return tostring(v)
end

local function compile_spec(spec)
  if type(spec) ~= 'table' then spec_error('expected a spec table {description=, options={...}}, got ' .. type(spec)) end
  local opts = spec.options or {}
  local list, by_name, positionals, dests = {}, {}, {}, {}
  for i, o in ipairs(opts) do
    if type(o) ~= 'table' or type(o[1]) ~= 'string' then
      spec_error(string.format('option %d: expected a table like {\'--name\', type=..., default=...}', i))
    end
    local names, long = {}, nil
    for _, n in ipairs(o) do
      if type(n) ~= 'string' then spec_error(string.format('option %d: names must be strings', i)) end
      names[#names + 1] = n
      if n:sub(1, 2) == '--' then long = long or n end
    end
    local positional = names[1]:sub(1, 1) ~= '-'
    local tname = ALIASES[o.type] or o.type or 'string'
    local ty = TYPES[tname]
    if not ty then
      spec_error(string.format("option %s: unknown type '%s' (expected string, number, integer, boolean, numbers, integers or strings)",
        names[1], tostring(o.type)))
    end
    if positional and tname == 'boolean' then spec_error('positional ' .. names[1] .. ' cannot be a boolean flag') end
    if not positional then
      for _, n in ipairs(names) do
        if by_name[n] then spec_error('option ' .. n .. ' is declared twice') end
      end
    end
    local dest = o.dest or (long or names[#names]):gsub('^%-+', ''):gsub('-', '_')
    if dests[dest] then spec_error(string.format("two options store into '%s'", dest)) end
    dests[dest] = true
    local e = { names = names, display = positional and names[1] or (long or names[1]), type = tname, ty = ty,
      dest = dest, default = o.default, help = o.help, choices = o.choices, min = o.min, max = o.max,
      positional = positional, metavar = o.metavar }
    if tname == 'boolean' and e.default == nil then e.default = false end
    e.required = o.required
    if e.required == nil then e.required = positional and o.default == nil end
    if e.choices ~= nil and type(e.choices) ~= 'table' then spec_error('option ' .. e.display .. ': choices must be a list') end
    list[#list + 1] = e
    if positional then
      positionals[#positionals + 1] = e
    else
      for _, n in ipairs(names) do by_name[n] = e end
    end
  end
  return { list = list, by_name = by_name, positionals = positionals, dests = dests }
end

-- ---- help and usage ---------------------------------------------------------------------------------------
local function metavar(e)
  if e.choices then
    local c = {}
    for i, v in ipairs(e.choices) do c[i] = fmt_value(v) end
    return '{' .. table.concat(c, ',') .. '}'
  end
  local m = e.metavar or (e.positional and e.dest or e.dest:upper())
  if e.ty.list then return m .. ' [' .. m .. ' ...]' end
  return m
end

local function invocation(e)
  if e.positional then return metavar(e) end
  if e.type == 'boolean' then
    local long = e.display:sub(1, 2) == '--' and e.display or nil
    local s = table.concat(e.names, ', ')
    return long and (s .. ', --no-' .. long:sub(3)) or s
  end
  local parts = {}
  for _, n in ipairs(e.names) do parts[#parts + 1] = n .. ' ' .. metavar(e) end
  return table.concat(parts, ', ')
end

local function usage(prog, c)
  local items = { '[-h]' }
  for _, e in ipairs(c.list) do
    if not e.positional then
      local s = e.type == 'boolean' and e.display or (e.display .. ' ' .. metavar(e))
      items[#items + 1] = e.required and s or ('[' .. s .. ']')
    end
  end
  for _, e in ipairs(c.positionals) do
    items[#items + 1] = e.required and metavar(e) or ('[' .. metavar(e) .. ']')
  end
  local head = 'usage: ' .. prog
  local lines, line = {}, head
  for _, it in ipairs(items) do
    if #line + 1 + #it > 78 and line ~= head then
      lines[#lines + 1] = line
      line = string.rep(' ', #head) .. ' ' .. it
    else
      line = line .. ' ' .. it
    end
  end
  lines[#lines + 1] = line
  return table.concat(lines, '\n')
end

local function help_line(inv, text)
  if #inv <= 22 then return string.format('  %-22s %s', inv, text) end
  return '  ' .. inv .. '\n' .. string.rep(' ', 25) .. text
end

local function describe(e)
  local notes = {}
  if e.type == 'boolean' then notes[#notes + 1] = 'flag'
  elseif not e.choices then notes[#notes + 1] = e.type end
  if e.min ~= nil then notes[#notes + 1] = '>= ' .. fmt_value(e.min) end
  if e.max ~= nil then notes[#notes + 1] = '<= ' .. fmt_value(e.max) end
  if e.required then notes[#notes + 1] = 'required'
  elseif e.default ~= nil then notes[#notes + 1] = 'default: ' .. fmt_value(e.default)
  else notes[#notes + 1] = 'default: none' end
  local h = e.help and (e.help .. ' ') or ''
  return h .. '(' .. table.concat(notes, ', ') .. ')'
end

local function help(prog, spec, c)
  local out = { usage(prog, c) }
  if spec.description then out[#out + 1] = '\n' .. spec.description end
  if #c.positionals > 0 then
    out[#out + 1] = '\npositional arguments:'
    for _, e in ipairs(c.positionals) do out[#out + 1] = help_line(metavar(e), describe(e)) end
  end
  out[#out + 1] = '\noptions:'
  out[#out + 1] = help_line('-h, --help', 'show this help message and exit')
  for _, e in ipairs(c.list) do
    if not e.positional then out[#out + 1] = help_line(invocation(e), describe(e)) end
  end
  if spec.epilog then out[#out + 1] = '\n' .. spec.epilog end
  return table.concat(out, '\n') .. '\n'
end
function M.help(argv, spec)
  local prog = spec and spec.prog or (type(argv) == 'table' and argv[0] or 'script'):match('[^/]*$')
  return help(prog, spec, compile_spec(spec))
end

-- ---- parsing ------------------------------------------------------------------------------------------------------
local function edit_distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function suggestion(c, name)
  local best, bd
  for n in pairs(c.by_name) do
    local d = edit_distance(name, n)
    if n:sub(1, #name) == name then d = 0 end
    if d <= math.max(2, math.floor(#n / 4)) and (not bd or d < bd or d == bd and n < best) then best, bd = n, d end
  end
  return best and (' (did you mean ' .. best .. '?)') or ''
end

local function expected(e)
  local s = e.ty.what
  if e.choices then
    local c = {}
    for i, v in ipairs(e.choices) do c[i] = fmt_value(v) end
    s = 'one of ' .. table.concat(c, ', ')
  end
  return e.ty.list and ('one or more values, each ' .. s) or s
end

-- convert and check one scalar; returns the value or raises the usage error through fail()
local function convert(e, s, fail)
  local v = e.ty.conv(s)
  if v == nil then
    fail(string.format("argument %s: expected %s, got '%s'", e.display, e.ty.what, s))
  end
  if e.choices then
    local found = false
    for _, c in ipairs(e.choices) do
      if c == v or tostring(c) == s then
        v, found = c, true
        break
      end
    end
    if not found then fail(string.format("argument %s: invalid choice '%s' (expected %s)", e.display, s, expected(e))) end
  end
  if e.min ~= nil and v < e.min then
    fail(string.format('argument %s: %s is below the minimum %s', e.display, s, fmt_value(e.min)))
  end
  if e.max ~= nil and v > e.max then
    fail(string.format('argument %s: %s is above the maximum %s', e.display, s, fmt_value(e.max)))
  end
  return v
end

local function split_list(e, tokens, fail)
  local out = {}
  for _, tok in ipairs(tokens) do
    for piece in tok:gmatch('[^,]+') do
      piece = piece:match('^%s*(.-)%s*$')
      if piece ~= '' then out[#out + 1] = convert(e, piece, fail) end
    end
  end
  if #out == 0 then fail(string.format('argument %s: expected %s', e.display, expected(e))) end
  return out
end

-- The parsed arguments: reading a name no option declares is an error (a typo like args.epoch
-- would otherwise silently read nil).
local function strict(values, c)
  return setmetatable(values, {
    __index = function(_, k)
      if c.dests[k] then return nil end
      local names = {}
      for d in pairs(c.dests) do names[#names + 1] = d end
      table.sort(names)
      raise(string.format("ddpm.cli: no option stores into '%s' (declared: %s)", tostring(k), table.concat(names, ', ')))
    end,
  })
end

function M.parse(argv, spec)
  if spec == nil and type(argv) == 'table' and argv.options then argv, spec = nil, argv end
  argv = argv or rawget(_G, 'arg') or {}
  local c = compile_spec(spec)
  local prog = spec.prog or tostring(argv[0] or 'script'):match('[^/]*$')
  local function fail(msg) exit_with(2, usage(prog, c) .. '\n' .. prog .. ': error: ' .. msg) end

  local tokens = {}
  for i = 1, #argv do tokens[i] = tostring(argv[i]) end
  local values, seen, pos_tokens = {}, {}, {}
  local i, only_positional = 1, false
  while i <= #tokens do
    local tok = tokens[i]
    i = i + 1
    if only_positional or not looks_like_option(tok) then
      pos_tokens[#pos_tokens + 1] = tok
    elseif tok == '--' then
      only_positional = true
    else
      local name, inline = tok:match('^(%-%-?[^=]+)=(.*)$')
      name = name or tok
      local e, negated = c.by_name[name], false
      if not e and name:sub(1, 5) == '--no-' then
        local b = c.by_name['--' .. name:sub(6)]
        if b and b.type == 'boolean' then e, negated = b, true end
      end
      if not e and (name == '-h' or name == '--help') then exit_with(0, help(prog, spec, c)) end
      if not e then fail(string.format("unrecognized option '%s'%s", name, suggestion(c, name))) end
      if e.type == 'boolean' then
        if negated and inline then fail(string.format("argument %s: takes no value", name)) end
        values[e.dest] = (inline and convert(e, inline, fail)) or (not negated and inline == nil)
      elseif e.ty.list then
        local got = {}
        if inline then got[1] = inline end
        -- greedy like nargs='+', but a number list stops at the first non-number after the
        -- first value (so a positional can follow); a bad first value is reported as such
        while not inline and i <= #tokens and not looks_like_option(tokens[i]) and
          (#got == 0 or e.type == 'strings' or e.ty.conv(tokens[i]:match('^[^,]*')) ~= nil) do
          got[#got + 1] = tokens[i]
          i = i + 1
        end
        values[e.dest] = split_list(e, got, fail)
      else
        local v = inline
        if v == nil then
          if i > #tokens or looks_like_option(tokens[i]) then
            fail(string.format('argument %s: expected a value (%s)', name, expected(e)))
          end
          v = tokens[i]
          i = i + 1
        end
        values[e.dest] = convert(e, v, fail)
      end
      seen[e.dest] = true
    end
  end

  local k = 1
  for _, e in ipairs(c.positionals) do
    if k <= #pos_tokens then
      if e.ty.list then
        local rest = {}
        for j = k, #pos_tokens do rest[#rest + 1] = pos_tokens[j] end
        values[e.dest] = split_list(e, rest, fail)
        k = #pos_tokens + 1
      else
        values[e.dest] = convert(e, pos_tokens[k], fail)
        k = k + 1
      end
      seen[e.dest] = true
    end
  end
  if k <= #pos_tokens then
    fail('unrecognized arguments: ' .. table.concat(pos_tokens, ' ', k))
  end

  local missing = {}
  for _, e in ipairs(c.list) do
    if not seen[e.dest] then
      if e.required then
        missing[#missing + 1] = e.positional and e.display or (e.display .. ' ' .. metavar(e))
      elseif type(e.default) == 'table' then
        local copy = {}
        for j, v in ipairs(e.default) do copy[j] = v end
        values[e.dest] = copy
      else
        values[e.dest] = e.default
      end
    end
  end
  if #missing > 0 then fail('the following arguments are required: ' .. table.concat(missing, ', ')) end
  return strict(values, c)
end

return M
