//! The two Lua scripts of the RESP backend on a server with `EVAL`.
//! Both touch only their `KEYS`, which share a hash tag, so a cluster
//! runs each on the one node that owns the slot.

use redis::{ConnectionLike, ErrorKind, RedisResult, Script, Value};

/// `KEYS`: the stored keys. Returns `{now_ms, v1, e1, v2, e2, …}`: the
/// server's `TIME` in milliseconds and, per key, its value (nil if
/// absent) and its `PEXPIRETIME` (-1: none, -2: absent).
const READ: &str = r"
local t = redis.call('TIME')
local out = { tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) }
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v then
    out[#out + 1] = v
    out[#out + 1] = redis.call('PEXPIRETIME', k)
  else
    out[#out + 1] = false
    out[#out + 1] = -2
  end
end
return out
";

/// `KEYS`: the stored keys; `ARGV`: six per key: what was read (`0` for
/// absent or `1`, the value, the `PEXPIRETIME`), then the change (`n`
/// none, `p` put, `d` delete), the new value and the new `PXAT` (empty
/// for none). Returns 1 after applying every change if every key is still
/// exactly as read (value and expiry; absent stays absent), else 0 with
/// nothing written.
const COMPARE_AND_APPLY: &str = r"
for i, k in ipairs(KEYS) do
  local b = (i - 1) * 6
  local v = redis.call('GET', k)
  if ARGV[b + 1] == '0' then
    if v then return 0 end
  else
    if (not v) or v ~= ARGV[b + 2] then return 0 end
    if redis.call('PEXPIRETIME', k) ~= tonumber(ARGV[b + 3]) then return 0 end
  end
end
for i, k in ipairs(KEYS) do
  local b = (i - 1) * 6
  local c = ARGV[b + 4]
  if c == 'p' then
    if ARGV[b + 6] == '' then
      redis.call('SET', k, ARGV[b + 5])
    else
      redis.call('SET', k, ARGV[b + 5], 'PXAT', ARGV[b + 6])
    end
  elseif c == 'd' then
    redis.call('DEL', k)
  end
end
return 1
";

/// A script and its SHA-1, run by `EVALSHA` (by `EVAL` after a
/// `NOSCRIPT`: a failover to a fresh replica, a `SCRIPT FLUSH`).
pub(crate) struct Lua {
    code: &'static str,
    hash: String,
}

impl Lua {
    fn new(code: &'static str) -> Lua {
        Lua {
            code,
            hash: Script::new(code).get_hash().to_owned(),
        }
    }

    /// `SCRIPT LOAD` (on every master of a cluster).
    pub(crate) fn load(&self, c: &mut dyn ConnectionLike) -> RedisResult<()> {
        // The reply is the hash; a server that answers another one gets
        // EVAL after its NOSCRIPT, so it is not checked here.
        let _: Value = redis::cmd("SCRIPT").arg("LOAD").arg(self.code).query(c)?;
        Ok(())
    }

    /// Runs the script on `keys` and `args`.
    pub(crate) fn run(
        &self,
        c: &mut dyn ConnectionLike,
        keys: &[Vec<u8>],
        args: &[Vec<u8>],
    ) -> RedisResult<Value> {
        let call = |name: &str, body: &str, c: &mut dyn ConnectionLike| {
            redis::cmd(name)
                .arg(body)
                .arg(keys.len())
                .arg(keys)
                .arg(args)
                .query::<Value>(c)
        };
        match call("EVALSHA", &self.hash, c) {
            Err(e) if e.kind() == ErrorKind::NoScriptError => call("EVAL", self.code, c),
            r => r,
        }
    }
}

impl Lua {
    /// Runs the script with `EVAL` right after `ASKING`, in one pipeline,
    /// on the node an `ASK` redirect named (the flag covers only the next
    /// command, so no `EVALSHA` first).
    pub(crate) fn run_asking(
        &self,
        c: &mut dyn ConnectionLike,
        keys: &[Vec<u8>],
        args: &[Vec<u8>],
    ) -> RedisResult<Value> {
        let (v,): (Value,) = redis::pipe()
            .cmd("ASKING")
            .ignore()
            .cmd("EVAL")
            .arg(self.code)
            .arg(keys.len())
            .arg(keys)
            .arg(args)
            .query(c)?;
        Ok(v)
    }
}

/// The scripts, hashed once.
pub(crate) struct Scripts {
    /// See [`READ`].
    pub(crate) read: Lua,
    /// See [`COMPARE_AND_APPLY`].
    pub(crate) apply: Lua,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            read: Lua::new(READ),
            apply: Lua::new(COMPARE_AND_APPLY),
        }
    }
}
