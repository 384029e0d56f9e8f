//! The catalogue's plain text for each kind of problem the verifier names: one short
//! sentence a consumer can read, in every language. The verifier's own message (English,
//! naming participants and entries) is the detail behind it.

use fairtrail_client::verify::Problem;

use super::Lang;

/// What `problem` means, in plain words, in `lang`.
pub fn problem_text(lang: Lang, problem: Problem) -> &'static str {
    let (en, es) = texts(problem);
    match lang {
        Lang::En => en,
        Lang::Es => es,
    }
}

/// (English, Spanish) for each problem. The match is exhaustive: a new problem in the
/// verifier does not compile until it has its texts here.
fn texts(problem: Problem) -> (&'static str, &'static str) {
    use Problem as P;
    match problem {
        // 1. checkpoint
        P::NoLogKey => (
            "No key of the public record was given, so its signature could not be checked.",
            "No se indicó la clave del registro público, así que no se pudo comprobar su firma.",
        ),
        P::CheckpointNotSignedByLog => (
            "The record's checkpoint is not signed with the record's key.",
            "El punto de control no está firmado con la clave del registro.",
        ),
        P::CheckpointFromAnotherLog => (
            "The checkpoint belongs to a different record.",
            "El punto de control pertenece a otro registro.",
        ),
        P::CheckpointMalformed => (
            "The record's checkpoint cannot be read.",
            "El punto de control del registro no se puede leer.",
        ),
        // 2. inclusion
        P::EntryBeyondCheckpoint => (
            "A step lies beyond the signed checkpoint of the record.",
            "Un paso queda fuera del punto de control firmado del registro.",
        ),
        P::LeafMalformed => (
            "An entry of the record cannot be read.",
            "Una entrada del registro no se puede leer.",
        ),
        P::NotInLog => (
            "A step is not proven to be in the public record.",
            "No está demostrado que un paso esté en el registro público.",
        ),
        P::DuplicateStatement => (
            "The same statement appears twice in the record.",
            "La misma declaración aparece dos veces en el registro.",
        ),
        P::TimeGoesBackwards => (
            "The record's dates go backwards.",
            "Las fechas del registro van hacia atrás.",
        ),
        // 3. signatures
        P::EnvelopeMalformed => (
            "A signed statement cannot be read.",
            "Una declaración firmada no se puede leer.",
        ),
        P::StatementMalformed => (
            "A statement is malformed.",
            "Una declaración está mal formada.",
        ),
        P::IssuerDidNotSign => (
            "A statement is not signed by the participant who made it.",
            "Una declaración no está firmada por quien la hizo.",
        ),
        P::IssuedAfterLogged => (
            "A statement was signed after the record says it was logged: the record's clock was held back.",
            "Una declaración se firmó después de que el registro dice haberla anotado: el reloj del registro se atrasó.",
        ),
        P::BadSignature => (
            "A signature is not genuine.",
            "Una firma no es auténtica.",
        ),
        // 4. participants and keys
        P::UndeclaredKey => (
            "A statement is signed with a key that no participant declared.",
            "Una declaración está firmada con una clave que ningún participante declaró.",
        ),
        P::RetiredKey => (
            "A statement is signed with a key its owner had already replaced.",
            "Una declaración está firmada con una clave que su titular ya había sustituido.",
        ),
        P::KeyReused => (
            "One key is claimed by two participants.",
            "Dos participantes reclaman la misma clave.",
        ),
        P::BadRotation => (
            "A change of key is not properly signed.",
            "Un cambio de clave no está bien firmado.",
        ),
        P::RecoveryQuorumNotMet => (
            "A lost key was replaced without enough guardians signing.",
            "Se sustituyó una clave perdida sin la firma de suficientes garantes.",
        ),
        // 5. tracing
        P::NoBinding => (
            "No seller has linked this product code to the goods.",
            "Ningún vendedor ha vinculado este código de producto con la mercancía.",
        ),
        P::BindingConflict => (
            "This product code is linked to goods twice.",
            "Este código de producto está vinculado dos veces a la mercancía.",
        ),
        P::ProductNotCovered => (
            "The policy covers none of the harvests this product comes from, so it cannot vouch for it.",
            "La política no cubre ninguna de las cosechas de las que viene este producto, así que no puede avalarlo.",
        ),
        P::UntracedLot => (
            "Part of the goods cannot be traced back to a harvest.",
            "Parte de la mercancía no se puede rastrear hasta una cosecha.",
        ),
        P::NotALot => (
            "A step refers to goods that do not exist.",
            "Un paso se refiere a mercancía que no existe.",
        ),
        P::LotUsedBeforeCreated => (
            "Goods were used before they were recorded.",
            "Se usó mercancía antes de que se registrara.",
        ),
        P::InvalidStatement => (
            "A statement breaks the rules of the record.",
            "Una declaración incumple las reglas del registro.",
        ),
        // 6. holders, quantities, yields
        P::NotHolder => (
            "Someone shipped or used goods they did not hold.",
            "Alguien envió o usó mercancía que no tenía.",
        ),
        P::LotOverdrawn => (
            "More goods were shipped or used than there were.",
            "Se envió o se usó más mercancía de la que había.",
        ),
        P::MixedTransfer => (
            "One shipment mixes different goods, which the rules do not allow.",
            "Un envío mezcla mercancías distintas, lo que las reglas no permiten.",
        ),
        P::YieldOutOfBounds => (
            "Processing turned out an implausible amount, outside the policy's bounds.",
            "La transformación dio una cantidad inverosímil, fuera de los límites de la política.",
        ),
        P::NoYieldBound => (
            "The policy sets no bounds for this processing, so its yield was not checked.",
            "La política no fija límites para esta transformación, así que no se comprobó su rendimiento.",
        ),
        P::YieldNotComputable => (
            "The yield of a processing step cannot be worked out (different units).",
            "No se puede calcular el rendimiento de una transformación (unidades distintas).",
        ),
        P::CommodityWithoutSource => (
            "Processing made goods the policy covers from nothing it covers.",
            "Una transformación produjo mercancía que cubre la política a partir de nada que ella cubra.",
        ),
        // 7. receipts
        P::ReceiptMissing => (
            "A shipment was not confirmed by whoever received it.",
            "Quien recibió un envío no lo confirmó.",
        ),
        P::ReceiptDisputed => (
            "Whoever received a shipment disputed it.",
            "Quien recibió un envío lo reclamó.",
        ),
        P::ReceiptAmountMismatch => (
            "The amount received differs from the amount shipped.",
            "La cantidad recibida no coincide con la enviada.",
        ),
        P::ReceiptByStranger => (
            "A shipment was confirmed by someone other than its recipient.",
            "Un envío fue confirmado por alguien que no era su destinatario.",
        ),
        // 8. certifications
        P::NotCertified => (
            "A step that needs a certification had none that counts.",
            "Un paso que necesita certificación no tenía ninguna válida.",
        ),
        P::UntrustedCertifier => (
            "A certification comes from a certifier the policy does not trust.",
            "Una certificación procede de un certificador en el que la política no confía.",
        ),
        P::CertificationOutOfScope => (
            "A certification does not cover this product or this activity.",
            "Una certificación no cubre este producto o esta actividad.",
        ),
        P::CertificationNotYetValid => (
            "A certification was not yet valid at the time.",
            "Una certificación aún no era válida en ese momento.",
        ),
        P::CertificationExpired => (
            "A certification had expired at the time.",
            "Una certificación había caducado en ese momento.",
        ),
        P::CertificationRevoked => (
            "A certification had been withdrawn.",
            "Una certificación había sido retirada.",
        ),
        P::CertificationSuspended => (
            "A certification was suspended at the time.",
            "Una certificación estaba suspendida en ese momento.",
        ),
        P::PgsQuorumNotMet => (
            "Too few fellow farmers signed a participatory certification.",
            "Muy pocos productores pares firmaron una certificación participativa.",
        ),
        P::UnauthorisedRevocation => (
            "Someone without the right tried to withdraw a certification; it was ignored.",
            "Alguien sin derecho intentó retirar una certificación; no se tuvo en cuenta.",
        ),
        // 9. prices
        P::NoPolicyForCommodity => (
            "The policy sets no minimum price for this product, so prices were not checked.",
            "La política no fija un precio mínimo para este producto, así que no se comprobaron los precios.",
        ),
        P::PriceBelowMinimum => (
            "Farmers were paid less than the fair-trade minimum price.",
            "A los agricultores se les pagó menos del precio mínimo de comercio justo.",
        ),
        P::PremiumMissing => (
            "No fair-trade premium was paid to the farmers.",
            "No se pagó la prima de comercio justo a los agricultores.",
        ),
        P::PremiumBelowMinimum => (
            "The premium paid was below the required premium.",
            "La prima pagada fue inferior a la exigida.",
        ),
        P::PriceNotComparable => (
            "The price paid cannot be compared with the minimum (another currency or unit).",
            "El precio pagado no se puede comparar con el mínimo (otra moneda u otra unidad).",
        ),
        // 10. disputes
        P::OpenDispute => (
            "Someone has disputed a step of this journey.",
            "Alguien ha reclamado un paso de este recorrido.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_its_own_text() {
        for p in [
            Problem::NoLogKey,
            Problem::NotInLog,
            Problem::PriceBelowMinimum,
            Problem::OpenDispute,
        ] {
            let (en, es) = (problem_text(Lang::En, p), problem_text(Lang::Es, p));
            assert!(!en.is_empty() && !es.is_empty());
            assert_ne!(en, es, "{p:?}");
        }
    }
}
