-- training/fs.lua: the few filesystem operations checkpoints need, without a shell: mkdir -p,
-- recursive removal of a tree we wrote, an atomic swap of two directories, writability checks.
local ffi = require 'ffi'
local F = require 'ddpm.ffi'
local raise = F.raise

-- the declarations may already exist (other modules declare mkdir); each is tried on its own
for _, decl in ipairs({
  'int mkdir(const char *path, unsigned int mode);',
  'int rmdir(const char *path);',
  'int access(const char *path, int mode);',
  'int getpid(void);',
  'long readlink(const char *path, char *buf, size_t size);',
  'int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);',
  'char *strerror(int errnum);',
}) do pcall(ffi.cdef, decl) end

local C = ffi.C
local M = {}

local AT_FDCWD, RENAME_EXCHANGE, W_OK, X_OK = -100, 2, 2, 1

local function errstr() return ffi.string(C.strerror(ffi.errno())) end

function M.is_dir(path)
  local f = io.open(path .. '/.', 'rb')
  if f then f:close() return true end
  return false
end

function M.exists(path)
  if M.is_dir(path) then return true end
  local f = io.open(path, 'rb')
  if f then f:close() return true end
  return false
end

function M.is_symlink(path)
  local buf = ffi.new('char[8]')
  return C.readlink(path, buf, 8) >= 0
end

function M.dirname(path)
  local d = path:match('^(.*)/[^/]*$')
  if d == nil then return '.' end
  if d == '' then return '/' end
  return d
end

function M.basename(path) return path:match('([^/]*)/*$') end

function M.join(a, b)
  if a == '' or a == '.' then return b end
  return a:sub(-1) == '/' and (a .. b) or (a .. '/' .. b)
end

-- mkdir -p; raises with the reason when a component cannot be created
function M.mkdirs(path)
  if M.is_dir(path) then return end
  local acc = path:sub(1, 1) == '/' and '' or nil
  for part in path:gmatch('[^/]+') do
    acc = acc and (acc .. '/' .. part) or part
    if not M.is_dir(acc) then
      if C.mkdir(acc, 493) ~= 0 and not M.is_dir(acc) then
        raise(string.format("cannot create directory '%s': %s", acc, errstr()))
      end
    end
  end
end

-- entries of a directory: {kind='d'|'f'|'o', name=}
function M.list(path) return require('ddpm.data.dataset').list_dir(path, 'list') end

-- rm -rf for a tree this program wrote; symbolic links are removed, never followed
function M.remove_tree(path)
  if not M.exists(path) and not M.is_symlink(path) then return end
  if M.is_dir(path) and not M.is_symlink(path) then
    for _, e in ipairs(M.list(path)) do M.remove_tree(path .. '/' .. e.name) end
    if C.rmdir(path) ~= 0 then raise(string.format("cannot remove directory '%s': %s", path, errstr())) end
  else
    local ok, err = os.remove(path)
    if not ok then raise(string.format("cannot remove '%s': %s", path, tostring(err))) end
  end
end

function M.rename(a, b)
  local ok, err = os.rename(a, b)
  if not ok then raise(string.format("cannot rename '%s' to '%s': %s", a, b, tostring(err))) end
end

-- exchange(a, b): swap two existing directories in one atomic step (Linux renameat2); false when
-- the system or filesystem cannot, so the caller falls back to two renames
function M.exchange(a, b)
  local ok, r = pcall(function() return C.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) end)
  return ok and r == 0
end

-- can files be created in dir (creating it if needed)? -> true | false, reason
function M.writable_dir(dir)
  local ok, err = pcall(M.mkdirs, dir)
  if not ok then return false, tostring(err):gsub('^.-:%d+: ', '') end
  if C.access(dir, W_OK + X_OK) ~= 0 then return false, string.format("'%s' is not writable: %s", dir, errstr()) end
  -- access() trusts the mode bits; a probe file also catches read-only mounts and full disks
  local probe = string.format('%s/.ddpm-write-test-%d', dir, C.getpid())
  local f, ferr = io.open(probe, 'wb')
  if not f then return false, string.format("cannot write in '%s': %s", dir, tostring(ferr)) end
  f:close()
  os.remove(probe)
  return true
end

function M.pid() return C.getpid() end

return M
