-- host_run.lua: helpers for the specs that drive the ddpm-lua executable as a subprocess: run a
-- shell command with given stdin and environment, capture stdout, stderr and the exit status.
local M = {}

M.exe = os.getenv('DDPM_LUA') or ((os.getenv('DDPM_SOURCE_DIR') or '.') .. '/build/ddpm-lua')

function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function M.read(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

function M.write(path, s)
  local f = assert(io.open(path, 'wb'))
  f:write(s)
  f:close()
end

function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute('mkdir -p ' .. M.q(p)) == 0)
  return p
end

function M.rmdir(p) os.execute('rm -rf ' .. M.q(p)) end

-- run `cmd` through sh; opts: stdin (string), env (table), cwd
function M.sh(cmd, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  M.write(dir .. '/in', opts.stdin or '')
  local env = {}
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. '=' .. M.q(v) end
  table.sort(env)
  local full = string.format('cd %s && %s sh -c %s <%s >%s 2>%s; echo $? >%s', M.q(opts.cwd or '.'),
    #env > 0 and ('env ' .. table.concat(env, ' ')) or '', M.q(cmd), M.q(dir .. '/in'), M.q(dir .. '/out'),
    M.q(dir .. '/err'), M.q(dir .. '/rc'))
  os.execute(full)
  local r = { stdout = M.read(dir .. '/out') or '', stderr = M.read(dir .. '/err') or '',
    status = tonumber(M.read(dir .. '/rc') or '') }
  M.rmdir(dir)
  return r
end

-- run ddpm-lua with an argument string (already shell-quoted where needed)
function M.run(args, opts) return M.sh(M.q(M.exe) .. ' ' .. (args or ''), opts) end

function M.have(prog) return os.execute('command -v ' .. prog .. ' >/dev/null 2>&1') == 0 end

return M
