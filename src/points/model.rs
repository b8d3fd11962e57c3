//! Fixed-point amounts (points, money, quantities) and the kinds of ledger entries and lots.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Amounts are stored as integers of ten-thousandths: 12.5 is stored as 125000.
pub const SCALE_DIGITS: u32 = 4;
const SCALE: i64 = 10_000;

/// A fixed-point amount in ten-thousandths; used for points, money and quantities alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed(pub i64);

impl Fixed {
    pub const ZERO: Fixed = Fixed(0);

    /// Rounds to four decimals (half away from zero); `None` when out of range.
    pub fn from_decimal(value: Decimal) -> Option<Fixed> {
        // Checked: a value near `Decimal::MAX` (a client can send 5e27) overflows when scaled.
        let scaled = value.round_dp(SCALE_DIGITS).checked_mul(Decimal::from(SCALE))?;
        scaled.to_i64().map(Fixed)
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, SCALE_DIGITS).normalize()
    }

    /// As a JSON number (for responses); exact for every stored value.
    pub fn to_f64(self) -> f64 {
        self.to_decimal().to_f64().unwrap_or(0.0)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// `self * numerator / denominator`, rounded down, in 128 bits so it cannot overflow.
    pub fn prorate(self, numerator: i64, denominator: i64) -> Fixed {
        if denominator == 0 {
            return Fixed::ZERO;
        }
        let value = i128::from(self.0) * i128::from(numerator) / i128::from(denominator);
        Fixed(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_decimal())
    }
}

impl std::ops::Add for Fixed {
    type Output = Fixed;
    fn add(self, other: Fixed) -> Fixed {
        Fixed(self.0.saturating_add(other.0))
    }
}

impl std::ops::Sub for Fixed {
    type Output = Fixed;
    fn sub(self, other: Fixed) -> Fixed {
        Fixed(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Neg for Fixed {
    type Output = Fixed;
    fn neg(self) -> Fixed {
        Fixed(self.0.saturating_neg())
    }
}

/// What a ledger entry did. Each kind moves the balance columns in one fixed way
/// ([`EntryKind::effect`]), which is how `perks verify` recomputes balances from entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Points awarded and redeemable at once.
    Award,
    /// Points awarded but locked until their unlock date.
    PromisedAward,
    /// Promised points becoming redeemable.
    Unlock,
    Redeem,
    RedeemReversal,
    Expire,
    /// Points taken back because the bill that earned them was returned.
    Return,
    Adjust,
    /// Points sent to another customer (their lots leave the sender's account).
    TransferOut,
    /// Points received from another customer (new lots keeping the sent lots' expiry).
    TransferIn,
}

impl EntryKind {
    pub const ALL: [EntryKind; 10] = [
        EntryKind::Award,
        EntryKind::PromisedAward,
        EntryKind::Unlock,
        EntryKind::Redeem,
        EntryKind::RedeemReversal,
        EntryKind::Expire,
        EntryKind::Return,
        EntryKind::Adjust,
        EntryKind::TransferOut,
        EntryKind::TransferIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Award => "AWARD",
            EntryKind::PromisedAward => "PROMISED_AWARD",
            EntryKind::Unlock => "UNLOCK",
            EntryKind::Redeem => "REDEEM",
            EntryKind::RedeemReversal => "REDEEM_REVERSAL",
            EntryKind::Expire => "EXPIRE",
            EntryKind::Return => "RETURN",
            EntryKind::Adjust => "ADJUST",
            EntryKind::TransferOut => "TRANSFER_OUT",
            EntryKind::TransferIn => "TRANSFER_IN",
        }
    }

    pub fn parse(value: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// How an entry of this kind with the given deltas moves each balance column.
    pub fn effect(self, current_delta: i64, promised_delta: i64) -> Balances {
        let moved = current_delta + promised_delta;
        let mut b =
            Balances { current: current_delta, promised: promised_delta, ..Balances::default() };
        match self {
            EntryKind::Award | EntryKind::PromisedAward => b.lifetime = moved,
            EntryKind::Unlock => {}
            EntryKind::Redeem => b.redeemed = -moved,
            EntryKind::RedeemReversal => b.redeemed = -moved,
            EntryKind::Expire => b.expired = -moved,
            EntryKind::Return => {
                b.returned = -moved;
                b.lifetime = moved;
            }
            EntryKind::Adjust => b.adjusted = moved,
            // A transfer moves spendable points between customers: neither side earned,
            // redeemed or lost them, so only the balances themselves move.
            EntryKind::TransferOut | EntryKind::TransferIn => {}
        }
        b
    }
}

/// The point balances of one customer in one program, in ten-thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balances {
    pub current: i64,
    pub promised: i64,
    pub lifetime: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub returned: i64,
    pub adjusted: i64,
}

impl std::ops::AddAssign for Balances {
    fn add_assign(&mut self, o: Balances) {
        self.current += o.current;
        self.promised += o.promised;
        self.lifetime += o.lifetime;
        self.redeemed += o.redeemed;
        self.expired += o.expired;
        self.returned += o.returned;
        self.adjusted += o.adjusted;
    }
}

/// Whether a lot can be spent yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LotKind {
    Regular,
    Promised,
}

impl LotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LotKind::Regular => "REGULAR",
            LotKind::Promised => "PROMISED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_round_trips_decimals() {
        let d = Decimal::new(12345, 2);
        let f = Fixed::from_decimal(d).unwrap();
        assert_eq!(f, Fixed(1_234_500));
        assert_eq!(f.to_decimal(), d);
        assert_eq!(Fixed(125_000).to_f64(), 12.5);
    }

    #[test]
    fn decimals_beyond_the_range_are_none_not_a_panic() {
        assert_eq!(Fixed::from_decimal(Decimal::MAX), None);
        assert_eq!(
            Fixed::from_decimal(Decimal::from_str_exact("5181436913680141000000000000").unwrap()),
            None
        );
        assert_eq!(Fixed::from_decimal(Decimal::from(i64::MAX)), None);
    }

    #[test]
    fn prorate_rounds_down_without_overflow() {
        assert_eq!(Fixed(100_000).prorate(1, 3), Fixed(33_333));
        assert_eq!(Fixed(i64::MAX).prorate(1, 2), Fixed(i64::MAX / 2));
    }

    #[test]
    fn every_kind_parses_back() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
        }
    }
}
