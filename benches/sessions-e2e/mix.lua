-- A session mix per wrk thread (run with as many threads as connections,
-- so each connection is one user), in cycles of 21 requests: log in, read
-- the session (18 requests), update it (the 10th request), log out, repeat.
local cookie = nil
local n = 0
local logins = 0

request = function()
  n = n + 1
  if cookie == nil then
    logins = logins + 1
    n = 0
    return wrk.format("POST", "/login?user=u" .. logins, {}, "")
  end
  local h = { ["Cookie"] = cookie }
  if n >= 20 then
    return wrk.format("POST", "/logout", h, "")
  end
  if n % 10 == 0 then
    return wrk.format("GET", "/update", h)
  end
  return wrk.format("GET", "/read", h)
end

response = function(status, headers, body)
  local sc = headers["Set-Cookie"] or headers["set-cookie"]
  if sc then
    local v = sc:match("^id=([^;]*)")
    if v == nil or v == "" then cookie = nil else cookie = "id=" .. v end
  end
  if status ~= 200 then
    -- wrk reports non-2xx responses itself; start over as a new user.
    cookie = nil
  end
end
