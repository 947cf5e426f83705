//! SETBIT and GETBIT: one bit of a string, bit 0 being the most
//! significant bit of the first byte, as Redis numbers them.

use super::{check_growth, check_key, lookup, lookup_read, view, write, Res};
use crate::cmd::{parse_int, Ctx};
use crate::resp::reply::Reply;

/// Redis's error for an offset that is not a number, is negative, or
/// addresses a byte at or past `proto-max-bulk-len`.
const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";

/// The bit offset `arg`, checked as Redis does: an integer, not negative,
/// its byte below `proto-max-bulk-len`.
fn bit_offset(ctx: &Ctx<'_>, arg: &[u8]) -> Result<u64, Reply> {
    let offset = parse_int(arg).map_err(|_| Reply::err(BAD_OFFSET))?;
    let offset = u64::try_from(offset).map_err(|_| Reply::err(BAD_OFFSET))?;
    if offset >> 3 >= ctx.shared.proto_max_bulk_len() {
        return Err(Reply::err(BAD_OFFSET));
    }
    Ok(offset)
}

/// The byte index and the mask of bit `offset`.
fn locate(offset: u64) -> (u64, u8) {
    (offset >> 3, 1 << (7 - (offset & 7)))
}

/// SETBIT key offset 0|1: sets the bit, growing the string with zero
/// bytes (creating it when missing, even to clear a bit), keeps the TTL,
/// and answers the bit's old value.
pub(super) fn setbit_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let offset = bit_offset(ctx, &args[2])?;
    let on = match parse_int(&args[3]) {
        Ok(0) => false,
        Ok(1) => true,
        _ => return Err(Reply::err("ERR bit is not an integer or out of range")),
    };
    check_key(&args[1])?;
    let (byte, mask) = locate(offset);
    let (mut value, ttl) = lookup(view(ctx)?, &args[1])?.unwrap_or_default();
    let need = byte + 1;
    if (value.len() as u64) < need {
        check_growth(ctx, need, 0)?;
    }
    // check_growth bounds the byte index by cairn's value limit.
    let index = usize::try_from(byte).map_err(|_| Reply::err(BAD_OFFSET))?;
    if value.len() <= index {
        value.resize(index + 1, 0);
    }
    let old = value[index] & mask != 0;
    if on {
        value[index] |= mask;
    } else {
        value[index] &= !mask;
    }
    write(view(ctx)?, &args[1], &value, ttl)?;
    Ok(Reply::Int(i64::from(old)))
}

/// GETBIT key offset: the bit, 0 past the end or for a missing key.
pub(super) fn getbit_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let offset = bit_offset(ctx, &args[2])?;
    let (byte, mask) = locate(offset);
    let Some((value, _)) = lookup_read(ctx, &args[1])? else {
        return Ok(Reply::Int(0));
    };
    let bit = usize::try_from(byte)
        .ok()
        .and_then(|i| value.get(i))
        .is_some_and(|b| b & mask != 0);
    Ok(Reply::Int(i64::from(bit)))
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn bit_zero_is_the_high_bit_of_the_first_byte() {
        assert_eq!(locate(0), (0, 0x80));
        assert_eq!(locate(7), (0, 0x01));
        assert_eq!(locate(8), (1, 0x80));
        assert_eq!(locate(13), (1, 0x04));
    }
}
